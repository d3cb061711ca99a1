// A single-page app, a public client with PKCE, signs in with wxlogin from headless Chromium on
// another origin than wxlogin's, by CORS; run by `cargo test` (tests/api/rp_libraries.rs).
//
// The page is openid-client's own ESM build, served from node_modules with an import map (no
// bundler): discovery, the token exchange and userinfo are the browser's cross-origin fetches.
// Three origins serve it (and a blank /probe page) (http://localhost:PORT, wxlogin being on 127.0.0.1): the app's, whose
// /callback is the registered redirect URI; a "listed" one, in the client's allowed_origins; and
// a stranger's, registered nowhere, whose reads must be blocked by the browser.
//
// Prints `listening on APP`, `origin listed ORIGIN`, `origin stranger ORIGIN`, then reads one JSON
// line from stdin: {"issuer", "client_id", "session" (a wxlogin session token, the user's cookie)}
// and prints `configured`, `signed in {claims, userinfo, access_token}` (or `{error}`), and
// `probe listed {...}`, `probe stranger {...}`: what each origin's fetches could read.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { join, normalize } from "node:path";
import { chromium } from "playwright-core";

const MODULES = join(import.meta.dirname, "node_modules");
/** The only files served from node_modules: openid-client and what it imports. */
const SERVED = ["openid-client/build/", "oauth4webapi/build/", "jose/dist/webapi/"];

const IMPORTS = {
  "openid-client": "/node_modules/openid-client/build/index.js",
  oauth4webapi: "/node_modules/oauth4webapi/build/index.js",
  "jose/jwe/compact/decrypt": "/node_modules/jose/dist/webapi/jwe/compact/decrypt.js",
  "jose/errors": "/node_modules/jose/dist/webapi/util/errors.js",
};

// The app: at / it starts the login, at /callback it finishes it and leaves the outcome in
// window.result. Settings come in the page's query (?issuer=&client_id=) and sessionStorage.
const APP_SCRIPT = `
import * as client from "openid-client";
const saved = JSON.parse(sessionStorage.getItem("login") ?? "{}");
const here = new URL(location.href);
const issuer = here.searchParams.get("issuer") ?? saved.issuer;
const clientId = here.searchParams.get("client_id") ?? saved.clientId;
try {
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(),
    { execute: [client.allowInsecureRequests] });
  if (here.pathname === "/callback") {
    const tokens = await client.authorizationCodeGrant(config, here, {
      pkceCodeVerifier: saved.verifier, expectedState: saved.state, expectedNonce: saved.nonce });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    window.result = { claims, userinfo, access_token: tokens.access_token };
  } else {
    const login = { issuer, clientId, verifier: client.randomPKCECodeVerifier(),
      state: client.randomState(), nonce: client.randomNonce() };
    sessionStorage.setItem("login", JSON.stringify(login));
    location.assign(client.buildAuthorizationUrl(config, {
      redirect_uri: location.origin + "/callback", scope: "openid phone",
      code_challenge: await client.calculatePKCECodeChallenge(login.verifier),
      code_challenge_method: "S256", state: login.state, nonce: login.nonce }).href);
  }
} catch (error) {
  window.result = { error: String(error), cause: String(error.cause ?? "") };
}
`;

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>SPA</title>
<script type="importmap">${JSON.stringify({ imports: IMPORTS })}</script>
<script type="module">${APP_SCRIPT}</script></head><body>SPA</body></html>`;

async function serve(request, response) {
  const path = new URL(request.url, "http://x").pathname;
  if (path.startsWith("/node_modules/")) {
    const file = normalize(path.slice("/node_modules/".length));
    if (!SERVED.some((dir) => file.startsWith(dir)) || !file.endsWith(".js")) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(MODULES, file));
      response.writeHead(200, { "content-type": "text/javascript" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
    return;
  }
  const page = path === "/probe" ? "<!doctype html><title>probe</title>" : PAGE;
  response.writeHead(200, { "content-type": "text/html" }).end(page);
}

async function origin() {
  const server = createServer((request, response) => {
    serve(request, response).catch(() => response.writeHead(500).end());
  });
  await new Promise((resolve) => server.listen(0, "localhost", resolve));
  return `http://localhost:${server.address().port}`;
}

async function firstLine(stream) {
  for await (const line of createInterface({ input: stream })) return line;
  throw new Error("no configuration on stdin");
}

/** Run in a page: what its origin can read of wxlogin's token endpoint, userinfo and JWKS. */
async function probe({ issuer, clientId, token }) {
  const read = async (url, init) => {
    try {
      const response = await fetch(url, init);
      await response.json();
      return response.status;
    } catch (error) {
      return `blocked: ${error.message}`;
    }
  };
  return {
    jwks: await read(`${issuer}/oauth/jwks`),
    userinfo: await read(`${issuer}/oauth/userinfo`, { headers: { authorization: `Bearer ${token}` } }),
    token: await read(`${issuer}/oauth/token`, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "authorization_code", code: "made-up", client_id: clientId }),
    }),
  };
}

const app = await origin();
const listed = await origin();
const stranger = await origin();
console.log(`listening on ${app}`);
console.log(`origin listed ${listed}`);
console.log(`origin stranger ${stranger}`);
const settings = JSON.parse(await firstLine(process.stdin));
console.log("configured");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  await context.addCookies([{ name: "wxlogin_session", value: settings.session, url: settings.issuer }]);
  const page = await context.newPage();
  page.on("console", (message) => console.error(`page: ${message.text()}`));
  const start = new URL(app);
  start.searchParams.set("issuer", settings.issuer);
  start.searchParams.set("client_id", settings.client_id);
  await page.goto(start.href);
  // wxlogin answers with the code, or first asks the user's consent for this client: Allow.
  const issuer = new URL(settings.issuer).origin;
  const callback = (url) => url.origin === app && url.pathname === "/callback";
  await page.waitForURL((url) => callback(url) || url.origin === issuer);
  if (new URL(page.url()).origin === issuer) {
    await page.click('button[name="consent"][value="allow"]');
    await page.waitForURL(callback);
  }
  await page.waitForFunction(() => window.result !== undefined);
  const result = await page.evaluate(() => window.result);
  console.log(`signed in ${JSON.stringify(result)}`);
  for (const [name, at] of [["listed", listed], ["stranger", stranger]]) {
    await page.goto(`${at}/probe`);
    const seen = await page.evaluate(probe, {
      issuer: settings.issuer, clientId: settings.client_id, token: result.access_token ?? "none" });
    console.log(`probe ${name} ${JSON.stringify(seen)}`);
  }
} finally {
  await browser.close();
}
process.exit(0);
