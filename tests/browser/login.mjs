// The login page and the sandbox's simulated phone, end to end in headless Chromium.
// `cargo test` runs this (tests/api/browser.rs) against real servers:
//   WXLOGIN_URL           a sandbox server
//   WXLOGIN_EXPIRING_URL  a sandbox server whose QR codes expire within seconds
//   WXLOGIN_CODE_URL      a sandbox server in code mode (WXLOGIN_LOGIN_MODE=code)
//   WXLOGIN_CONFIRM_URL   a sandbox server that asks the scanner to confirm (WXLOGIN_CONFIRM=number)
//   SCREENSHOTS           the folder for a screenshot of each step
//   CHROMIUM              the browser to drive
import assert from 'node:assert/strict';
import path from 'node:path';
import jsQR from 'jsqr';
import { chromium } from 'playwright-core';

const { WXLOGIN_URL, WXLOGIN_EXPIRING_URL, WXLOGIN_CODE_URL, WXLOGIN_CONFIRM_URL, SCREENSHOTS, CHROMIUM } =
  process.env;
const LOGIN_VIEWPORT = { width: 480, height: 640 };
const PHONE_VIEWPORT = { width: 390, height: 844 };
const PHONE_NUMBER = '13800138000';
// Smallest font size, in CSS pixels, for a code or number the user reads off the screen.
const BIG_TEXT_PX = 32;

let step = 0;
async function screenshot(page, name) {
  step += 1;
  const file = path.join(SCREENSHOTS, `${String(step).padStart(2, '0')}-${name}.png`);
  // The whole page: the phone's replies and SMS list may run past the viewport.
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  screenshot ${file}`);
}

// Fails the run on any script error or console error in a page, but for the API's error
// answers (the page shows those in words) and the favicon nobody serves.
function watchForErrors(page, errors) {
  page.on('pageerror', (error) => errors.push(`${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    const expected = /\/(api\/|favicon\.ico$)/.test(message.location().url);
    if (message.type() === 'error' && !expected) errors.push(`${page.url()}: ${message.text()}`);
  });
}

// Waits for the QR image to load, then reads it the way a phone camera would.
async function scanQrCode(page, previousSrc = '') {
  await page.waitForFunction((previous) => {
    const image = document.getElementById('qr-image');
    return image.complete && image.naturalWidth > 0 && image.src !== previous;
  }, previousSrc);
  const { src, width, height, pixels } = await page.evaluate(() => {
    const image = document.getElementById('qr-image');
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 300;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    const data = context.getImageData(0, 0, canvas.width, canvas.height);
    return { src: image.src, width: data.width, height: data.height, pixels: Array.from(data.data) };
  });
  const code = jsQR(Uint8ClampedArray.from(pixels), width, height);
  assert.ok(code, `no QR code could be read from ${src}`);
  return { src, text: code.data };
}

// Runs while the login page is open, and records whether the bind form was ever shown.
async function recordBindForm(page) {
  await page.evaluate(() => {
    window.bindFormShown = false;
    const form = document.getElementById('bind');
    new MutationObserver(() => { window.bindFormShown ||= !form.hidden; })
      .observe(form, { attributes: true, attributeFilter: ['hidden'] });
  });
}

// Waits for the element at `selector` to match `pattern`, checks it is big, and returns its text.
async function bigTextShown(page, selector, pattern) {
  const element = page.locator(selector, { hasText: pattern });
  await element.waitFor();
  const fontSize = await element.evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
  assert.ok(fontSize >= BIG_TEXT_PX, `${selector} is ${fontSize}px, too small to read`);
  return element.textContent();
}

// Sends the official account a message from the simulated phone.
async function sendMessage(phone, text) {
  await phone.fill('#message', text);
  await phone.getByRole('button', { name: 'Send', exact: true }).click();
}

// Asks for an SMS code on the login page's bind form; reads it off the simulated phone.
async function requestSmsCode(login, phone) {
  await login.locator('#bind').waitFor();
  await login.fill('#phone', PHONE_NUMBER);
  await login.getByRole('button', { name: 'Send code' }).click();
  await login.getByRole('button', { name: /^Resend in \d+s$/ }).waitFor();
  assert.ok(await login.locator('#send-code').isDisabled());
  const sms = phone.locator('#sms li', { hasText: PHONE_NUMBER }).first();
  await sms.waitFor();
  return (await sms.textContent()).match(/\d{6}$/)[0];
}

async function bindAndExpectLoggedIn(login, smsCode, openid) {
  await login.fill('#code', smsCode);
  await login.getByRole('button', { name: 'Bind and log in' }).click();
  await login.locator('#me').waitFor();
  assert.equal(await login.textContent('#me-phone'), PHONE_NUMBER);
  assert.equal(await login.textContent('#me-openid'), openid);
  assert.ok(await login.locator('#error').isHidden());
}

async function newUserBindsAPhone(login, phone) {
  console.log('a new user scans, binds a phone with the SMS code, and is logged in');
  await login.goto(`${WXLOGIN_URL}/`);
  const qr = await scanQrCode(login);
  assert.match(qr.text, /^http:\/\/127\.0\.0\.1:\d+\/sandbox\/phone\?ticket=/);
  assert.equal(await login.locator('#sandbox-phone').evaluate((a) => a.href), qr.text);
  await screenshot(login, 'login-qr-code');

  await phone.goto(qr.text);
  const openid = await phone.inputValue('#openid');
  assert.match(openid, /^o[\w-]{27}$/);
  await phone.getByRole('button', { name: 'Scan as a new follower' }).click();
  await phone.locator('#reply', { hasText: '手机号' }).waitFor();
  await screenshot(phone, 'phone-scanned-as-new-follower');

  await login.locator('#bind').waitFor();
  await screenshot(login, 'login-bind-form');
  const code = await requestSmsCode(login, phone);
  await screenshot(phone, 'phone-sms-code');

  await login.fill('#code', code === '000000' ? '000001' : '000000');
  await login.getByRole('button', { name: 'Bind and log in' }).click();
  await login.locator('#error', { hasText: 'The verification code is wrong' }).waitFor();
  await screenshot(login, 'login-wrong-code');

  await bindAndExpectLoggedIn(login, code, openid);
  await screenshot(login, 'login-logged-in');
  return { openid, qrSrc: qr.src };
}

async function returningUserScansIn(login, phone, user) {
  console.log("a returning user's scan logs in without the form");
  await login.getByRole('button', { name: 'Log out' }).click();
  const qr = await scanQrCode(login, user.qrSrc);
  await recordBindForm(login);
  await screenshot(login, 'login-after-logout');

  await phone.goto(qr.text);
  assert.equal(await phone.inputValue('#openid'), user.openid, 'the same phone is the same user');
  await phone.getByRole('button', { name: 'Scan as a follower' }).click();
  await phone.locator('#reply', { hasText: '登录成功' }).waitFor();
  await screenshot(phone, 'phone-scanned-as-follower');

  await login.locator('#me').waitFor();
  assert.equal(await login.textContent('#me-phone'), PHONE_NUMBER);
  assert.equal(await login.evaluate(() => window.bindFormShown), false);
  await screenshot(login, 'login-returning-user');
}

async function expiredQrCodeOffersRefresh(login) {
  console.log('an expired QR code shows the refresh prompt, and a click brings a new one');
  await login.goto(`${WXLOGIN_EXPIRING_URL}/`);
  const first = await scanQrCode(login);
  const refresh = login.getByRole('button', { name: 'QR code expired — click to refresh' });
  await refresh.waitFor();
  await screenshot(login, 'login-expired');
  await refresh.click();
  const second = await scanQrCode(login, first.src);
  assert.notEqual(second.text, first.text);
  await screenshot(login, 'login-refreshed');
}

async function codeModeLogin(login, phone) {
  console.log('code mode: a new user follows the account, sends it the login code, binds a phone');
  await login.goto(`${WXLOGIN_CODE_URL}/`);
  const loginCode = await bigTextShown(login, '#login-code', /^\d{6}$/);
  const accountQr = await scanQrCode(login);
  assert.match(accountQr.text, /^http:\/\/127\.0\.0\.1:\d+\/sandbox\/phone$/, 'the account QR has no ticket');
  assert.equal(await login.locator('#sandbox-phone').evaluate((a) => a.href), accountQr.text);
  await screenshot(login, 'code-mode-login');

  await phone.goto(accountQr.text);
  const openid = await phone.inputValue('#openid');
  assert.ok(await phone.locator('#scan-new').isHidden(), 'no ticket, nothing to scan');
  await phone.getByRole('button', { name: 'Follow the official account' }).click();
  await phone.locator('#reply', { hasText: '6 位登录码' }).waitFor();
  await sendMessage(phone, loginCode);
  await phone.locator('#reply', { hasText: '手机号' }).waitFor();
  await screenshot(phone, 'code-mode-phone-sent-code');

  await bindAndExpectLoggedIn(login, await requestSmsCode(login, phone), openid);
  await screenshot(login, 'code-mode-logged-in');
}

// Scans the login page's QR code and waits for the page to ask for confirmation; returns the
// number it shows.
async function scanAndReadConfirmNumber(login, phone, { previousSrc, follow }) {
  const qr = await scanQrCode(login, previousSrc);
  await phone.goto(qr.text);
  await phone.getByRole('button', { name: follow ? 'Scan as a new follower' : 'Scan as a follower' }).click();
  await phone.locator('#reply', { hasText: '两位数字' }).waitFor();
  const number = await bigTextShown(login, '#confirm-number', /^[1-9]\d$/);
  return { qrSrc: qr.src, number };
}

async function confirmedLogin(login, phone) {
  console.log('confirmation: replying 0 refuses the login; replying the number shown logs in');
  await login.goto(`${WXLOGIN_CONFIRM_URL}/`);
  const refused = await scanAndReadConfirmNumber(login, phone, { follow: true });
  await screenshot(login, 'confirm-number');
  await screenshot(phone, 'confirm-phone-request');
  await sendMessage(phone, '0');
  await phone.locator('#reply', { hasText: '已拒绝' }).waitFor();
  await login.locator('#denied', { hasText: 'The login was refused in WeChat' }).waitFor();
  await screenshot(login, 'confirm-denied');

  await login.getByRole('button', { name: 'Start again' }).click();
  const confirmed = await scanAndReadConfirmNumber(login, phone, { previousSrc: refused.qrSrc, follow: false });
  await sendMessage(phone, confirmed.number);
  await phone.locator('#reply', { hasText: '手机号' }).waitFor();
  const openid = await phone.inputValue('#openid');
  await bindAndExpectLoggedIn(login, await requestSmsCode(login, phone), openid);
  await screenshot(login, 'confirm-logged-in');
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // Playwright adds --headless and a fresh temporary --user-data-dir itself. The rest keep
  // Chromium off the network, which this machine does not have.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const errors = [];
const pages = [];

// A fresh browser profile with a login tab and, when asked, a second tab as the phone: the same
// "phone" for every scan in that profile.
async function openTabs({ withPhone }) {
  // The pages follow Accept-Language: this script reads their English.
  const context = await browser.newContext({ viewport: LOGIN_VIEWPORT, locale: 'en-US' });
  context.setDefaultTimeout(15_000);
  const tabs = { login: await context.newPage() };
  if (withPhone) {
    tabs.phone = await context.newPage();
    await tabs.phone.setViewportSize(PHONE_VIEWPORT);
  }
  for (const page of Object.values(tabs)) {
    pages.push(page);
    watchForErrors(page, errors);
  }
  return tabs;
}

try {
  const { login, phone } = await openTabs({ withPhone: true });
  const user = await newUserBindsAPhone(login, phone);
  await returningUserScansIn(login, phone, user);
  await expiredQrCodeOffersRefresh((await openTabs({ withPhone: false })).login);
  const codeMode = await openTabs({ withPhone: true });
  await codeModeLogin(codeMode.login, codeMode.phone);
  const confirming = await openTabs({ withPhone: true });
  await confirmedLogin(confirming.login, confirming.phone);
  assert.deepEqual(errors, [], 'the pages reported errors');
  console.log('all browser scenarios passed');
} catch (error) {
  for (const [i, page] of pages.entries()) {
    await page.screenshot({ path: path.join(SCREENSHOTS, `failure-page${i + 1}.png`) }).catch(() => {});
  }
  console.error(error);
  if (errors.length) console.error('page errors:', errors);
  process.exitCode = 1;
} finally {
  await browser.close();
}
