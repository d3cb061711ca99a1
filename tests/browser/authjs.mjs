// Auth.js (the real `@auth/core`, which next-auth v5 wraps) signs a user in with wxlogin, run
// by `cargo test` (tests/api/authjs.rs). The provider configuration between the README markers
// is README.md's "Auth.js" example, line for line (the test checks), with the issuer from the
// environment.
//
// The "app" is Auth.js answering Web Requests for http://app.test, as next-auth's route handler
// would; the user's browser is `fetch` carrying wxlogin's session cookie.
//
// Environment: AUTH_WXLOGIN_ISSUER (wxlogin's base URL), AUTH_WXLOGIN_ID, AUTH_WXLOGIN_SECRET,
// WXLOGIN_SESSION (a wxlogin session token of a user who is logged in).
// Prints the session as JSON on the last line of stdout; exits non-zero on any failure.

import { Auth, setEnvDefaults } from "@auth/core";

const APP = "http://app.test";
// As a Next.js app's .env would set them.
process.env.AUTH_URL = `${APP}/api/auth`;
process.env.AUTH_SECRET = "authjs-test-secret-0123456789abcdef0123456789";

const session = required("WXLOGIN_SESSION");
required("AUTH_WXLOGIN_ISSUER");
required("AUTH_WXLOGIN_ID");
required("AUTH_WXLOGIN_SECRET");

// README begin
const config = {
  providers: [{
    id: "wxlogin",
    name: "WeChat",
    type: "oidc",
    issuer: process.env.AUTH_WXLOGIN_ISSUER,
    clientId: process.env.AUTH_WXLOGIN_ID,
    clientSecret: process.env.AUTH_WXLOGIN_SECRET,
    authorization: { params: { scope: "openid phone" } },
    checks: ["pkce", "state", "nonce"],
  }],
  callbacks: {
    // At sign-in, `profile` holds the ID token's claims. Keep wxlogin's `sub`: without a
    // database adapter, Auth.js's own token.sub is a new random id at every sign-in.
    jwt({ token, profile }) {
      if (profile) {
        token.wxlogin_sub = profile.sub;
        token.phone_number = profile.phone_number;
      }
      return token;
    },
    // The pairwise `sub`, stable across logins, is the user's id for this site.
    session({ session, token }) {
      session.user.id = token.wxlogin_sub;
      session.user.phone_number = token.phone_number;
      return session;
    },
  },
};
// README end

// What next-auth does with the environment (AUTH_URL, AUTH_SECRET) before calling Auth().
setEnvDefaults(process.env, config);

/** The app's cookie jar, as the user's browser keeps it for http://app.test. */
const jar = new Map();

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function keepCookies(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(";");
    const at = pair.indexOf("=");
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === "";
    if (expired) jar.delete(name);
    else jar.set(name, value);
  }
}

/** A request to the app (Auth.js), with the jar's cookies; keeps the cookies it sets. */
async function app(path, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
  const url = path.startsWith("http") ? path : `${APP}${path}`;
  const response = await Auth(new Request(url, { ...init, headers }), config);
  keepCookies(response);
  return response;
}

// 1. What next-auth's signIn("wxlogin") does: the CSRF token, then a POST to the sign-in action.
const csrf = await app("/api/auth/csrf");
check(csrf.status === 200, `GET /api/auth/csrf answered ${csrf.status}`);
const { csrfToken } = await csrf.json();
const signin = await app("/api/auth/signin/wxlogin", {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ csrfToken, callbackUrl: `${APP}/welcome` }),
});
const toProvider = signin.headers.get("location");
check(signin.status === 302 && toProvider, `sign-in answered ${signin.status}: ${await signin.text()}`);
const authorize = new URL(toProvider);
const issuer = process.env.AUTH_WXLOGIN_ISSUER.replace(/\/$/, "");
check(
  `${authorize.origin}${authorize.pathname}` === `${issuer}/oauth/authorize`,
  `sign-in sent the browser to ${toProvider}, not to wxlogin's authorization endpoint`,
);
const asked = authorize.searchParams;
check(asked.get("scope") === "openid phone", `scope ${asked.get("scope")}`);
check(asked.get("code_challenge_method") === "S256" && asked.get("code_challenge"), "no PKCE S256 challenge");
check(asked.get("state") && asked.get("nonce"), "no state or nonce");
check(
  asked.get("redirect_uri") === `${APP}/api/auth/callback/wxlogin`,
  `redirect_uri ${asked.get("redirect_uri")}`,
);
console.log(`Auth.js sent the browser to ${authorize.origin}${authorize.pathname}`);

// 2. The browser, logged in to wxlogin, follows it and comes back with a code.
const provider = await fetch(toProvider, {
  headers: { cookie: `wxlogin_session=${session}` },
  redirect: "manual",
});
const back = provider.headers.get("location");
check(provider.status === 302 && back, `wxlogin's authorize answered ${provider.status}: ${await provider.text()}`);
const callback = new URL(back);
check(
  `${callback.origin}${callback.pathname}` === `${APP}/api/auth/callback/wxlogin`,
  `wxlogin sent the browser back to ${back}`,
);
check(callback.searchParams.get("code"), `no code in ${back}`);
console.log("wxlogin sent the browser back to the callback with a code");

// 3. The callback: Auth.js checks state, redeems the code with the PKCE verifier, checks the ID
// token (issuer, audience, nonce) and sets its session cookie.
const done = await app(back);
const landing = done.headers.get("location");
check(done.status === 302, `the callback answered ${done.status}: ${await done.text()}`);
check(
  landing === `${APP}/welcome`,
  `the callback sent the browser to ${landing}, not back to the app (an Auth.js error page?)`,
);
check(jar.has("authjs.session-token"), `no session cookie; cookies: ${[...jar.keys()].join(", ")}`);

// 4. The app reads its session.
const sessionResponse = await app("/api/auth/session");
check(sessionResponse.status === 200, `GET /api/auth/session answered ${sessionResponse.status}`);
const body = await sessionResponse.json();
check(body?.user?.id, `the session has no user id: ${JSON.stringify(body)}`);
console.log("signed in");
console.log(JSON.stringify(body));
