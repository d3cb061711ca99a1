// wxlogin's login page: the reference integration. Copy it and adapt onLoggedIn.
//
// The flow: POST /api/qrcode and show its QR code (or, in code mode, the login code to send
// the official account and the account's QR code to follow it); follow the scene's status (the
// event stream, or long-poll where that fails); on `confirm` show the number to reply in WeChat;
// on `need_bind` ask for a mobile number and its SMS code; on `logged_in` keep the session
// token, or go back to the authorization that sent the user here (an OpenID Connect login, which
// the server names in `data-return-to`); on `denied` or `expired` offer
// to start again.
'use strict';

const API = '';            // wxlogin's origin: '' when it serves this page or sits behind your proxy
const POLL_WAIT_SECS = 25; // how long the server may hold each status request
const RETRY_MS = 3000;     // pause before polling again after a network error
const TOKEN_KEY = 'wxlogin-token';
// The scene a tap on "log in with this WeChat" took to WeChat, watched again on the way back.
const AUTHORIZING_KEY = 'wxlogin-web-authorization';
// The states after which a scene's status never changes again.
const FINAL_STATES = ['logged_in', 'denied', 'expired'];

// The page's strings in its language, from the server's string table (src/i18n/*.json).
const STRINGS = JSON.parse(document.body.dataset.text);
// The string `key`, each {name} filled from `values`.
const t = (key, values = {}) =>
  STRINGS[key].replace(/\{(\w+)\}/g, (_, name) => String(values[name]));

const $ = (id) => document.getElementById(id);
let scene = null;         // the login being shown and watched: POST /api/qrcode's answer
let cooldownTimer = null;
let askedMode = null;     // 'code' once the user asked for a login code instead of a QR code

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.retryAfter = Number(retryAfter) || 0;
  }
}

// One call to wxlogin. Every error answer is {"error", "message"}; it becomes an ApiError.
// A scene's routes answer only the browser that created it: the wxlogin_browser cookie proves
// it, and so does the scene's secret, which is sent too (it works where cookies are blocked).
async function api(method, path, body, token, sceneSecret) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  if (sceneSecret) headers['X-Scene-Secret'] = sceneSecret;
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { error: 'network', message: t('js.network') });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get('Retry-After'));
  return data;
}

// Shows one view, and tells screen readers what changed.
function show(view) {
  for (const id of ['scan', 'confirm', 'bind', 'denied', 'me']) $(id).hidden = id !== view;
  announce(view);
}

function announce(what) {
  $('status').textContent = t(`js.announce.${what}`);
}

// Shows the elements of this login mode and hides the other mode's.
function showMode(mode) {
  for (const element of document.querySelectorAll('[data-mode]')) element.hidden = element.dataset.mode !== mode;
}

function showError(error) {
  const message = error ? error.message : '';
  $('error').textContent = message.charAt(0).toUpperCase() + message.slice(1);
  $('error').hidden = !error;
}

// A new login: a new QR code, or in code mode (or when `mode` asks for it) a new login code.
async function startLogin(mode) {
  askedMode = mode;
  scene = null;
  showError(null);
  show('scan');
  $('refresh').hidden = true;
  let created;
  try {
    created = await api('POST', mode === 'code' ? '/api/qrcode?mode=code' : '/api/qrcode');
  } catch (error) {
    showError(error);
    offerRefresh(t('js.retry'));
    return;
  }
  present(created);
}

// Shows a scene's QR code or login code, and follows it.
function present(current) {
  scene = current;
  show('scan');
  showMode(scene.mode);
  // A phone can't scan its own screen: it may ask for a login code, if the account takes them.
  $('use-code').hidden = scene.mode !== 'qrcode' || !('codes' in document.body.dataset);
  $('login-code').textContent = scene.code ?? '';
  $('qr-image').src = scene.qrcode_url;
  $('qr-image').alt = t(`js.qr_alt.${scene.mode}`);
  // Sandbox only: its QR codes open a simulated phone; link it for trying on one machine. The
  // account's own QR code (code mode) opens it without a ticket, as a plain follow.
  const phone = $('sandbox-phone');
  phone.hidden = !scene.qrcode_url.startsWith('/sandbox/');
  phone.textContent = t(`js.sandbox_phone.${scene.mode}`);
  phone.href = scene.ticket ? `/sandbox/phone?ticket=${encodeURIComponent(scene.ticket)}` : '/sandbox/phone';
  watch(scene);
}

// Inside WeChat's browser: WeChat's web authorization names the user of this phone, who then
// scans this page's scene from the server's side. The scene waits in the tab's storage.
function authorizeInWechat() {
  if (!scene) return;
  sessionStorage.setItem(AUTHORIZING_KEY, JSON.stringify(scene));
  const path = document.body.dataset.returnTo;
  const query = path ? `?return_to=${encodeURIComponent(path)}` : '';
  location.assign(`${API}/api/qrcode/${encodeURIComponent(scene.scene_id)}/web-authorization${query}`);
}

// Follows one scene until it reaches a final state, or another login replaces it: by its event
// stream, falling back to long-polling when the stream fails (an old proxy, say).
function watch(current) {
  if (!window.EventSource) return poll(current);
  const events = new EventSource(`${API}/api/qrcode/${current.scene_id}/events`);
  events.onmessage = (message) => {
    if (scene !== current) return events.close();
    const status = JSON.parse(message.data);
    // The stream ends after these; close before the browser tries to reconnect.
    if (FINAL_STATES.includes(status.state)) events.close();
    onStatus(current, status);
  };
  events.onerror = () => {
    events.close();
    if (scene === current) poll(current);
  };
}

async function poll(current) {
  while (scene === current) {
    let status;
    try {
      status = await api('GET', `/api/qrcode/${current.scene_id}/status?wait=${POLL_WAIT_SECS}`,
        undefined, undefined, current.scene_secret);
    } catch (error) {
      // 404: the server no longer knows the scene (say, it restarted); that is expired too.
      if (error.status === 404) status = { state: 'expired' };
      else {
        if (scene === current) showError(error);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
    }
    if (scene !== current || onStatus(current, status)) return;
  }
}

// Acts on a scene's status; true once there is nothing more to wait for.
function onStatus(current, status) {
  if (status.state === 'confirm') {
    showError(null);
    $('confirm-number').textContent = status.confirm_number;
    show('confirm');
  } else if (status.state === 'need_bind' && $('bind').hidden) {
    showError(null);
    show('bind');
    $('phone').focus();
  } else if (status.state === 'logged_in') {
    onLoggedIn(status.token, current);
    return true;
  } else if (status.state === 'denied') {
    scene = null;
    show('denied');
    return true;
  } else if (status.state === 'expired') {
    scene = null;
    show('scan');
    offerRefresh(t(`js.expired.${current.mode}`));
    announce('expired');
    return true;
  }
  return false;
}

function offerRefresh(text) {
  $('refresh').textContent = text;
  $('refresh').hidden = false;
}

async function sendCode() {
  showError(null);
  try {
    const answer = await api('POST', `/api/qrcode/${scene.scene_id}/sms`, { phone: $('phone').value },
      undefined, scene.scene_secret);
    startCooldown(answer.cooldown);
    $('code').focus();
  } catch (error) {
    showError(error);
    if (error.retryAfter) startCooldown(error.retryAfter);
  }
}

// The send button counts down until the server accepts another code request.
function startCooldown(secs) {
  clearInterval(cooldownTimer);
  const button = $('send-code');
  const tick = () => {
    button.disabled = secs > 0;
    button.textContent = secs > 0 ? t('js.resend_in', { secs }) : t('login.send_code');
    if (secs <= 0) clearInterval(cooldownTimer);
    secs -= 1;
  };
  cooldownTimer = setInterval(tick, 1000);
  tick();
}

async function bind(event) {
  event.preventDefault();
  showError(null);
  const current = scene;
  try {
    const answer = await api('POST', `/api/qrcode/${current.scene_id}/bind`, {
      phone: $('phone').value,
      code: $('code').value,
    }, undefined, current.scene_secret);
    if (scene === current) onLoggedIn(answer.token);  // the answer set the session cookie
  } catch (error) {
    showError(error);
  }
}

// Where to go once logged in: the server puts the authorization request that sent the user
// here in data-return-to, a path it checked. Joined to this page's own origin, it can't leave it.
function returnTo() {
  const path = document.body.dataset.returnTo;
  if (!path || !path.startsWith('/oauth/authorize')) return null;
  const url = new URL(location.origin + path);
  return url.origin === location.origin ? url.href : null;
}

// Logged in. A site would hand the token to its own back end here, which checks it with
// GET /api/me; this page keeps it for the tab and shows who is logged in. Sent here to log in
// (an OpenID Connect authorization), it goes back instead, carrying the session cookie.
async function onLoggedIn(token, loggedInScene) {
  const target = returnTo();
  if (target) {
    // An event stream can't set a cookie; the status answer does.
    if (loggedInScene) {
      await api('GET', `/api/qrcode/${loggedInScene.scene_id}/status`, undefined, undefined,
        loggedInScene.scene_secret).catch(() => null);
    }
    location.assign(target);
    return;
  }
  scene = null;
  startCooldown(0);
  $('bind').reset();
  sessionStorage.setItem(TOKEN_KEY, token);
  showMe(token);
}

async function showMe(token) {
  try {
    const me = await api('GET', '/api/me', undefined, token);
    $('me-phone').textContent = me.phone;
    $('me-openid').textContent = me.openid;
    showError(null);
    show('me');
  } catch (error) {
    if (error.status !== 401) return showError(error);
    sessionStorage.removeItem(TOKEN_KEY); // the session ended: log in again
    startLogin();
  }
}

async function logout() {
  try {
    await api('POST', '/api/logout', undefined, sessionStorage.getItem(TOKEN_KEY));
  } catch (error) {
    if (error.status !== 401) return showError(error); // 401: it had ended already
  }
  sessionStorage.removeItem(TOKEN_KEY);
  startLogin();
}

$('refresh').addEventListener('click', () => startLogin(askedMode));
$('use-code').addEventListener('click', () => startLogin('code'));
$('web-authorize').addEventListener('click', authorizeInWechat);
$('in-wechat').hidden = !('inWechat' in document.body.dataset);
$('start-again').addEventListener('click', () => startLogin());
$('send-code').addEventListener('click', sendCode);
$('bind').addEventListener('submit', bind);
$('logout').addEventListener('click', logout);

const saved = sessionStorage.getItem(TOKEN_KEY);
const authorizing = sessionStorage.getItem(AUTHORIZING_KEY);
sessionStorage.removeItem(AUTHORIZING_KEY);
if (authorizing) present(JSON.parse(authorizing));
else if (saved && !returnTo()) showMe(saved);
else startLogin();
