// Attacks on the login page and its API that only a real browser can show, in headless Chromium.
// `cargo test` runs this (tests/api/browser.rs) against a real sandbox server:
//   WXLOGIN_URL  the server
//   CHROMIUM     the browser to drive
//
// 1. A planted session (login CSRF): the attacker logs their own scene in, then sends the
//    victim's browser to that scene's status URL from another site. The victim must not end up
//    holding the attacker's session cookie.
// 2. An open redirect: hostile `return_to` values must leave the browser on wxlogin's origin.
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';

const { WXLOGIN_URL, CHROMIUM } = process.env;
const ORIGIN = new URL(WXLOGIN_URL).origin;

// The attacker's own client: no cookies, so it proves its scenes with X-Scene-Secret.
async function call(method, path, { body, secret } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (secret) headers['X-Scene-Secret'] = secret;
  const response = await fetch(ORIGIN + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const scan = (ticket, openid) => call('POST', '/sandbox/scan', { body: { ticket, openid, follow: false } });

// The attacker binds a phone once, so each later scan of theirs logs in at once.
async function signUp(openid, phone) {
  const scene = await call('POST', '/api/qrcode');
  await scan(scene.ticket, openid);
  const secret = scene.scene_secret;
  await call('POST', `/api/qrcode/${scene.scene_id}/sms`, { body: { phone }, secret });
  const { code } = await call('GET', `/sandbox/sms/${phone}`);
  await call('POST', `/api/qrcode/${scene.scene_id}/bind`, { body: { phone, code }, secret });
}

// A page on another origin (another "site" to Chromium: localhost vs 127.0.0.1) that links to
// `target`, and has a form that posts to it.
async function attackerSite(target) {
  const server = http.createServer((_, response) => {
    response.setHeader('Content-Type', 'text/html');
    response.end(`<!doctype html><a id="lure" href="${target}">You won a prize</a>
      <form id="post" method="post" action="${target}"><button>Claim</button></form>`);
  });
  await new Promise((resolve) => server.listen(0, 'localhost', resolve));
  return { server, url: `http://localhost:${server.address().port}/` };
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});

async function plantedSession() {
  await signUp('oAttacker', '13800138666');
  // The attacker's scene, logged in as the attacker.
  const scene = await call('POST', '/api/qrcode');
  await scan(scene.ticket, 'oAttacker');
  const statusUrl = `${ORIGIN}/api/qrcode/${scene.scene_id}/status`;
  const own = await call('GET', statusUrl.slice(ORIGIN.length), { secret: scene.scene_secret });
  assert.equal(own.state, 'logged_in', 'the attacker logged their own scene in');

  // The victim has used the login page before (so holds a browser key of their own), then
  // follows the attacker's link: a top-level navigation, which carries SameSite=Lax cookies.
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction(() => document.getElementById('qr-image').src !== '');
  const site = await attackerSite(statusUrl);
  try {
    await page.goto(site.url);
    const [response] = await Promise.all([page.waitForNavigation(), page.click('#lure')]);
    assert.equal(response.status(), 403, 'the status URL refuses a browser that did not create the scene');
    const answer = JSON.parse(await page.locator('body').innerText());
    assert.equal(answer.error, 'not_scene_owner');
    assert.equal(answer.token, undefined);
  } finally {
    site.server.close();
  }
  const cookies = await context.cookies(ORIGIN);
  assert.ok(!cookies.some((c) => c.name === 'wxlogin_session'),
    `the victim holds no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  // Nor can another site's form start a login in the victim's browser, replacing its key.
  // (Its path is /api/qrcode, so ask for every cookie, not the origin's root.)
  const key = () => context.cookies().then((all) => all.find((c) => c.name === 'wxlogin_browser')?.value);
  const before = await key();
  assert.ok(before, 'the login page gave the victim a browser key');
  const formSite = await attackerSite(`${ORIGIN}/api/qrcode`);
  try {
    await page.goto(formSite.url);
    const [posted] = await Promise.all([page.waitForNavigation(), page.click('#post button')]);
    assert.equal(posted.status(), 403, 'a login started from another site is refused');
  } finally {
    formSite.server.close();
  }
  assert.equal(await key(), before, "the victim's browser key is unchanged");
  // And nothing logs the victim's browser in by cookie.
  const me = await page.goto(`${ORIGIN}/api/me`);
  assert.equal(me.status(), 401);
  await context.close();
  console.log('  planted session refused');
}

// Values that normalise to another host (`//host`), or that browsers read as one.
const HOSTILE_RETURN_TO = [
  '//evil.example/x',
  '/.//evil.example/x',
  '/a/..//evil.example/x',
  '/%2e%2e//evil.example/x',
  '/%2E/%2E%2E//evil.example/x',
  '/./%2e//evil.example',
  '/\\evil.example/x',
  '/\\/evil.example/x',
  '/\t/evil.example/x',
  '/\n/evil.example/x',
  'https://evil.example/oauth/authorize',
  'javascript:alert(document.domain)',
  '/oauth/authorize/../..//evil.example',
  `${ORIGIN.replace('127.0.0.1', 'localhost')}/oauth/authorize`,
];

// Opens the login page with `returnTo`, logs a bound user in by a scan, and reports where the
// browser went. Any request off the origin fails the test (and is never sent).
async function loginReturningTo(returnTo) {
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  const left = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === ORIGIN) return route.continue();
    left.push(url);
    return route.fulfill({ status: 200, contentType: 'text/html', body: 'off the origin' });
  });
  const page = await context.newPage();
  await page.goto(`${ORIGIN}/?return_to=${encodeURIComponent(returnTo)}`);
  const phone = page.locator('#sandbox-phone[href*="ticket="]');
  await phone.waitFor({ state: 'attached' });
  const ticket = new URL(await phone.getAttribute('href'), ORIGIN).searchParams.get('ticket');
  await scan(ticket, 'oAttacker');
  // Either the page shows who is logged in, or it has navigated away.
  await page.waitForFunction(() => !document.getElementById('me')?.hidden || location.pathname !== '/',
    undefined, { timeout: 15_000 }).catch(() => {});
  const where = page.url();
  await context.close();
  return { where, left };
}

async function openRedirects() {
  for (const hostile of HOSTILE_RETURN_TO) {
    const { where, left } = await loginReturningTo(hostile);
    assert.deepEqual(left, [], `return_to=${JSON.stringify(hostile)} sent the browser off the origin`);
    assert.equal(new URL(where).origin, ORIGIN, `return_to=${JSON.stringify(hostile)} ended at ${where}`);
    assert.equal(new URL(where).pathname, '/', `return_to=${JSON.stringify(hostile)} went to ${where}`);
  }
  // The one place it does go back to: the authorization request, on this origin.
  const good = '/oauth/authorize?client_id=site&state=s1';
  const { where, left } = await loginReturningTo(good);
  assert.deepEqual(left, []);
  assert.equal(where, ORIGIN + good);
  console.log(`  ${HOSTILE_RETURN_TO.length} hostile return_to values stayed on the origin`);
}

try {
  await plantedSession();
  await openRedirects();
} finally {
  await browser.close();
}
console.log('attacks refused');
