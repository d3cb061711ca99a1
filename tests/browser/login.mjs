// The login page and the sandbox's simulated phone, end to end in headless Chromium.
// `cargo test` runs this (tests/api/browser.rs) against two real servers:
//   WXLOGIN_URL           a sandbox server
//   WXLOGIN_EXPIRING_URL  a sandbox server whose QR codes expire within seconds
//   SCREENSHOTS           the folder for a screenshot of each step
//   CHROMIUM              the browser to drive
import assert from 'node:assert/strict';
import path from 'node:path';
import jsQR from 'jsqr';
import { chromium } from 'playwright-core';

const { WXLOGIN_URL, WXLOGIN_EXPIRING_URL, SCREENSHOTS, CHROMIUM } = process.env;
const LOGIN_VIEWPORT = { width: 480, height: 640 };
const PHONE_VIEWPORT = { width: 390, height: 700 };
const PHONE_NUMBER = '13800138000';

let step = 0;
async function screenshot(page, name) {
  step += 1;
  const file = path.join(SCREENSHOTS, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
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
  await login.fill('#phone', PHONE_NUMBER);
  await login.getByRole('button', { name: 'Send code' }).click();
  await login.getByRole('button', { name: /^Resend in \d+s$/ }).waitFor();
  assert.ok(await login.locator('#send-code').isDisabled());

  const sms = phone.locator('#sms li', { hasText: PHONE_NUMBER }).first();
  await sms.waitFor();
  const code = (await sms.textContent()).match(/\d{6}$/)[0];
  await screenshot(phone, 'phone-sms-code');

  await login.fill('#code', code === '000000' ? '000001' : '000000');
  await login.getByRole('button', { name: 'Bind and log in' }).click();
  await login.locator('#error', { hasText: 'The verification code is wrong' }).waitFor();
  await screenshot(login, 'login-wrong-code');

  await login.fill('#code', code);
  await login.getByRole('button', { name: 'Bind and log in' }).click();
  await login.locator('#me').waitFor();
  assert.equal(await login.textContent('#me-phone'), PHONE_NUMBER);
  assert.equal(await login.textContent('#me-openid'), openid);
  assert.ok(await login.locator('#error').isHidden());
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
try {
  const context = await browser.newContext({ viewport: LOGIN_VIEWPORT });
  context.setDefaultTimeout(15_000);
  const login = await context.newPage();
  // A second tab of the same browser: the same "phone" for both scans.
  const phone = await context.newPage();
  await phone.setViewportSize(PHONE_VIEWPORT);
  const expiringContext = await browser.newContext({ viewport: LOGIN_VIEWPORT });
  expiringContext.setDefaultTimeout(15_000);
  const expiring = await expiringContext.newPage();
  pages.push(login, phone, expiring);
  pages.forEach((page) => watchForErrors(page, errors));

  const user = await newUserBindsAPhone(login, phone);
  await returningUserScansIn(login, phone, user);
  await expiredQrCodeOffersRefresh(expiring);
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
