// Languages, phones and WeChat's own browser, end to end in headless Chromium, with an
// accessibility audit (axe-core) of every page state on the way. `cargo test` runs this
// (tests/api/browser.rs) against a sandbox server in auto mode with web authorization on:
//   WXLOGIN_URL       the server
//   SCREENSHOTS       the folder for a screenshot of each step
//   DOC_SCREENSHOTS   docs/screenshots, for README's pictures
//   CHROMIUM          the browser to drive
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const { WXLOGIN_URL, SCREENSHOTS, DOC_SCREENSHOTS, CHROMIUM } = process.env;
const AXE = createRequire(import.meta.url).resolve('axe-core');
const DESKTOP = { width: 1024, height: 720 };
const PHONE = { width: 390, height: 844 };
const IPHONE_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1';
const WECHAT_UA = `${IPHONE_UA.replace(' Version/17.0', '').replace(' Safari/604.1', '')} MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN`;
const PHONE_NUMBER = '13800138018';

let step = 0;
async function screenshot(page, name, docName) {
  step += 1;
  const file = path.join(SCREENSHOTS, `i18n-${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  screenshot ${file}`);
  if (docName) await page.screenshot({ path: path.join(DOC_SCREENSHOTS, docName), fullPage: true });
}

// axe-core on the page as it is now: no serious or critical violation.
const audited = [];
async function audit(page, state) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(violations, [], `accessibility violations in ${state}`);
  audited.push(state);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});
const errors = [];
const pages = [];

// A fresh profile. `bypassCSP` only lets the audit inject axe-core into wxlogin's pages.
async function open(options) {
  const context = await browser.newContext({ bypassCSP: true, ...options });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (error) => errors.push(`${page.url()}: ${error.message}`));
  pages.push(page);
  return page;
}

async function languages() {
  console.log('Chinese for a Chinese browser, English for an English one, and the switch');
  const chinese = await open({ viewport: DESKTOP, locale: 'zh-CN' });
  await chinese.goto(`${WXLOGIN_URL}/`);
  assert.equal(await chinese.getAttribute('html', 'lang'), 'zh-CN');
  await chinese.getByRole('heading', { name: '微信登录' }).waitFor();
  await chinese.getByText('请用微信扫描二维码登录。').waitFor();
  await chinese.waitForFunction(() => document.getElementById('qr-image').naturalWidth > 0);
  // A desktop with a mouse: no "this phone" hint.
  assert.ok(await chinese.locator('#on-phone').isHidden());
  await screenshot(chinese, 'desktop-zh', 'login-zh-desktop.png');
  await audit(chinese, 'login page, Chinese, desktop');

  await chinese.getByRole('link', { name: 'English' }).click();
  await chinese.getByRole('heading', { name: 'Log in with WeChat' }).waitFor();
  assert.equal(await chinese.getAttribute('html', 'lang'), 'en');
  await audit(chinese, 'login page, English');
  // The choice stays for the next page, here the sandbox's phone.
  await chinese.goto(`${WXLOGIN_URL}/sandbox/phone`);
  await chinese.getByRole('heading', { name: 'Simulated WeChat' }).waitFor();
  await audit(chinese, 'sandbox phone, English');

  const english = await open({ viewport: DESKTOP, locale: 'en-US' });
  await english.goto(`${WXLOGIN_URL}/`);
  assert.equal(await english.getAttribute('html', 'lang'), 'en');
  await english.getByText('Scan the QR code with WeChat to log in.').waitFor();
  await english.getByRole('link', { name: '中文' }).click();
  await english.getByRole('heading', { name: '微信登录' }).waitFor();
  // Dark mode passes the same audit.
  const dark = await open({ viewport: DESKTOP, locale: 'zh-CN', colorScheme: 'dark' });
  await dark.goto(`${WXLOGIN_URL}/`);
  await dark.waitForFunction(() => document.getElementById('qr-image').naturalWidth > 0);
  await audit(dark, 'login page, dark mode');
}

async function phoneOutsideWechat() {
  console.log('a 390 px phone outside WeChat: the album hint, and a login code instead');
  const phone = await open({ viewport: PHONE, userAgent: IPHONE_UA, isMobile: true, hasTouch: true, locale: 'zh-CN' });
  await phone.goto(`${WXLOGIN_URL}/`);
  await phone.waitForFunction(() => document.getElementById('qr-image').naturalWidth > 0);
  const hint = phone.locator('#on-phone');
  await hint.waitFor();
  assert.match(await hint.textContent(), /长按二维码.*扫一扫.*相册/);
  const useCode = phone.getByRole('button', { name: '不方便扫码？改用登录码' });
  await useCode.waitFor();
  await screenshot(phone, 'phone-outside-wechat', 'phone-outside-wechat.png');
  await audit(phone, 'login page on a phone');
  await useCode.click();
  const code = phone.locator('#login-code');
  await code.waitFor();
  assert.match(await code.textContent(), /^\d{6}$/);
  await phone.locator('#status', { hasText: '请扫码登录' }).waitFor({ state: 'attached' });
  await screenshot(phone, 'phone-login-code');
  await audit(phone, 'login code on a phone');
}

// In WeChat's browser: one tap, the sandbox's authorize page plays WeChat as `openid`.
async function tapInWechat(page, openid, { snapshot = false } = {}) {
  await page.goto(`${WXLOGIN_URL}/`);
  const button = page.getByRole('button', { name: '使用当前微信登录' });
  await button.waitFor();
  await page.waitForFunction(() => document.getElementById('qr-image').naturalWidth > 0);
  await button.click();
  await page.waitForURL(/\/sandbox\/oauth2\/authorize\?appid=.*#wechat_redirect$/);
  await page.getByLabel('这个微信用户的 openid').fill(openid);
  if (snapshot) await page.getByLabel(/快照页/).check();
  return page;
}

async function smsCode() {
  const response = await fetch(`${WXLOGIN_URL}/sandbox/sms/${PHONE_NUMBER}`);
  return (await response.json()).code;
}

async function insideWechat() {
  console.log("inside WeChat's browser: one tap logs in, for a new user and a returning one");
  const page = await open({ viewport: PHONE, userAgent: WECHAT_UA, isMobile: true, hasTouch: true, locale: 'zh-CN' });
  const openid = `oWebAuthBrowser${Date.now()}`.padEnd(28, '0').slice(0, 28);
  await page.goto(`${WXLOGIN_URL}/`);
  await page.getByRole('button', { name: '使用当前微信登录' }).waitFor();
  await page.waitForFunction(() => document.getElementById('qr-image').naturalWidth > 0);
  // Inside WeChat, no "save the QR image" hint: the tap replaces it.
  assert.ok(await page.locator('#on-phone').isHidden());
  await screenshot(page, 'inside-wechat', 'inside-wechat.png');
  await audit(page, 'login page inside WeChat');

  await tapInWechat(page, openid);
  await screenshot(page, 'sandbox-authorize');
  await audit(page, 'sandbox authorize page');
  await page.getByRole('button', { name: '授权并返回' }).click();
  // Back on the login page: a new user binds a phone, with no scan and no confirmation.
  await page.locator('#bind').waitFor();
  await audit(page, 'bind form');
  await page.getByLabel('手机号').fill(PHONE_NUMBER);
  await page.getByRole('button', { name: '获取验证码' }).click();
  await page.getByRole('button', { name: /秒后可重新获取$/ }).waitFor();
  await page.getByLabel('验证码').fill(await smsCode());
  await page.getByRole('button', { name: '绑定并登录' }).click();
  await page.locator('#me').waitFor();
  assert.equal(await page.textContent('#me-openid'), openid);
  await audit(page, 'logged in');

  // Returning: one tap and logged in, no form.
  await page.getByRole('button', { name: '退出登录' }).click();
  await tapInWechat(page, openid);
  await page.getByRole('button', { name: '授权并返回' }).click();
  await page.locator('#me').waitFor();
  assert.equal(await page.textContent('#me-phone'), PHONE_NUMBER);
  await screenshot(page, 'inside-wechat-logged-in');

  console.log('a snapshot-page user is refused');
  const snapshot = await open({ viewport: PHONE, userAgent: WECHAT_UA, isMobile: true, locale: 'zh-CN' });
  await tapInWechat(snapshot, 'oWebAuthSnapshotBrowser00001', { snapshot: true });
  await snapshot.getByRole('button', { name: '授权并返回' }).click();
  await snapshot.getByText(/快照页/).waitFor();
  await snapshot.getByRole('heading', { name: '无法登录' }).waitFor();
  await screenshot(snapshot, 'snapshot-refused');
  await audit(snapshot, 'snapshot refusal page');
}

try {
  await languages();
  await phoneOutsideWechat();
  await insideWechat();
  assert.deepEqual(errors, [], 'the pages reported errors');
  console.log(`accessibility audit passed on: ${audited.join('; ')}`);
  console.log('all language, phone and WeChat scenarios passed');
} catch (error) {
  for (const [i, page] of pages.entries()) {
    await page.screenshot({ path: path.join(SCREENSHOTS, `i18n-failure-page${i + 1}.png`) }).catch(() => {});
  }
  console.error(error);
  if (errors.length) console.error('page errors:', errors);
  process.exitCode = 1;
} finally {
  await browser.close();
}
