// The sandbox's simulated phone: WeChat's side of a scan, a follow or a message, driven by
// buttons. Opened from a login QR code it has that code's ticket and can scan it; opened from
// the account's own QR code (code mode) it has none, and follows and sends the login code.
'use strict';

const SMS_REFRESH_MS = 1500;
const OPENID_KEY = 'wxlogin-sandbox-openid';

const $ = (id) => document.getElementById(id);
// The page's strings in its language (src/i18n/*.json), each {name} filled from `values`.
const STRINGS = JSON.parse(document.body.dataset.text);
const t = (key, values = {}) =>
  STRINGS[key].replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
const ticket = new URLSearchParams(location.search).get('ticket');
const openid = () => $('openid').value;

// Looks like WeChat's: 'o' and 27 base64url characters.
function randomOpenid() {
  const bytes = crypto.getRandomValues(new Uint8Array(21));
  const base64 = btoa(String.fromCharCode(...bytes));
  return 'o' + base64.slice(0, 27).replaceAll('+', '-').replaceAll('/', '_');
}

// POSTs to a sandbox route; shows its error message, if any, and returns the answer or null.
async function post(path, body) {
  $('error').hidden = true;
  try {
    const response = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.message);
    return data;
  } catch (error) {
    $('error').textContent = error.message;
    $('error').hidden = false;
    return null;
  }
}

// Does something in WeChat and shows what the official account replied; the answer, or null.
async function act(path, body) {
  const answer = await post(path, body);
  if (answer) {
    $('reply').textContent = answer.reply || t('phone.no_reply', { status: answer.status });
  }
  return answer;
}

async function sendMessage(event) {
  event.preventDefault();
  // Kept when it failed to send, to try again.
  if (await act('/sandbox/text', { openid: openid(), content: $('message').value })) $('message').value = '';
}

async function unsubscribe() {
  const answer = await post('/sandbox/unsubscribe', { openid: openid() });
  if (answer) $('reply').textContent = t('phone.unfollowed');
}

// The codes the service "sent" by SMS, newest first: in the sandbox every phone number lands here.
async function refreshSms() {
  try {
    const response = await fetch('/sandbox/sms');
    const received = await response.json();
    const lines = received.slice(0, 5).map((sms) => t('phone.sms_line', sms));
    $('sms').replaceChildren(...(lines.length ? lines : [t('phone.nothing_yet')]).map((line) => {
      const item = document.createElement('li');
      item.textContent = line;
      return item;
    }));
  } catch {
    // The next refresh tries again.
  }
}

// One phone is one WeChat user: its openid stays the same across pages.
$('openid').value = localStorage.getItem(OPENID_KEY) || randomOpenid();
localStorage.setItem(OPENID_KEY, $('openid').value);
$('openid').addEventListener('change', () => localStorage.setItem(OPENID_KEY, $('openid').value));
for (const id of ['scanned-hint', 'scan-new', 'scan-follower']) $(id).hidden = !ticket;
for (const id of ['account-hint', 'follow']) $(id).hidden = Boolean(ticket);
$('scan-new').addEventListener('click', () => act('/sandbox/scan', { ticket, openid: openid(), follow: true }));
$('scan-follower').addEventListener('click', () => act('/sandbox/scan', { ticket, openid: openid(), follow: false }));
$('follow').addEventListener('click', () => act('/sandbox/follow', { openid: openid() }));
$('message-form').addEventListener('submit', sendMessage);
$('unsubscribe').addEventListener('click', unsubscribe);
refreshSms();
setInterval(refreshSms, SMS_REFRESH_MS);
