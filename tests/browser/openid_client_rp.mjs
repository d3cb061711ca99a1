// A relying party built on openid-client 6 (npm), run by `cargo test` (tests/api/rp_libraries.rs):
// a tiny web app on a random loopback port that signs users in with wxlogin, using the library's
// own defaults unless the test's configuration says otherwise.
//
// It prints `listening on http://127.0.0.1:PORT`, then reads one JSON line from stdin (the
// provider is started after it, once its redirect URI is known):
//   {"issuer", "client_id", "client_secret" (absent: a public client),
//    "auth": "client_secret_basic" (absent: openid-client's default, client_secret_post),
//    "verify_signatures": true (openid-client's enableNonRepudiationChecks: ID tokens are
//    verified against the JWKS it fetched and caches)}
//
// Routes (the user's browser is the Rust test):
//   GET /login?prompt=&max_age=&scope=   302 to wxlogin's authorization endpoint
//   GET /callback                        the code exchanged, the ID token checked by the library,
//                                        userinfo read: {claims, userinfo, access_token, id_token}
//   GET /introspect?token=  GET /revoke?token=
//   GET /logout?id_token_hint=&state=    302 to wxlogin's end_session_endpoint
//   GET /logged-out                      where wxlogin sends the browser back: {state}
// Errors answer 400 {error, error_description} with the library's error.

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import * as client from "openid-client";

/** What a login started with, by its `state`. */
const pending = new Map();
let config;
let origin;

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    answer(res, 400, {
      error: err.error ?? err.code ?? err.name,
      error_description: err.error_description ?? err.message,
    });
  });
});

server.listen(0, "127.0.0.1", () => {
  origin = `http://127.0.0.1:${server.address().port}`;
  console.log(`listening on ${origin}`);
});

const settings = JSON.parse(await firstLine(process.stdin));
config = await client.discovery(
  new URL(settings.issuer),
  settings.client_id,
  settings.client_secret,
  settings.auth === "client_secret_basic" ? client.ClientSecretBasic(settings.client_secret) : undefined,
  { execute: [client.allowInsecureRequests] },
);
if (settings.verify_signatures) client.enableNonRepudiationChecks(config);
console.log("configured");

async function firstLine(stream) {
  for await (const line of createInterface({ input: stream })) return line;
  throw new Error("no configuration on stdin");
}

function answer(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

async function handle(req, res) {
  const url = new URL(req.url, origin);
  const query = url.searchParams;
  switch (url.pathname) {
    case "/login": {
      const code_verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const nonce = client.randomNonce();
      const maxAge = query.has("max_age") ? Number(query.get("max_age")) : undefined;
      const parameters = {
        redirect_uri: `${origin}/callback`,
        scope: query.get("scope") ?? "openid phone",
        code_challenge: await client.calculatePKCECodeChallenge(code_verifier),
        code_challenge_method: "S256",
        state,
        nonce,
      };
      if (query.has("prompt")) parameters.prompt = query.get("prompt");
      if (maxAge !== undefined) parameters.max_age = String(maxAge);
      pending.set(state, { code_verifier, nonce, maxAge });
      const to = client.buildAuthorizationUrl(config, parameters);
      return answer(res, 302, {}, { location: to.href });
    }
    case "/callback": {
      const started = pending.get(query.get("state"));
      if (!started) return answer(res, 400, { error: "unknown_state", error_description: url.href });
      pending.delete(query.get("state"));
      const tokens = await client.authorizationCodeGrant(config, url, {
        pkceCodeVerifier: started.code_verifier,
        expectedState: query.get("state"),
        expectedNonce: started.nonce,
        maxAge: started.maxAge,
      });
      const claims = tokens.claims();
      const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
      return answer(res, 200, { claims, userinfo, access_token: tokens.access_token, id_token: tokens.id_token });
    }
    case "/introspect":
      return answer(res, 200, await client.tokenIntrospection(config, query.get("token")));
    case "/revoke":
      await client.tokenRevocation(config, query.get("token"));
      return answer(res, 200, { revoked: true });
    case "/logout": {
      const to = client.buildEndSessionUrl(config, {
        id_token_hint: query.get("id_token_hint"),
        post_logout_redirect_uri: `${origin}/logged-out`,
        state: query.get("state"),
      });
      return answer(res, 302, {}, { location: to.href });
    }
    case "/logged-out":
      return answer(res, 200, { state: query.get("state") });
    default:
      return answer(res, 404, { error: "not_found", error_description: url.pathname });
  }
}
