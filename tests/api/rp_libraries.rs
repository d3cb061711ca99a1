//! Relying-party libraries that know nothing of wxlogin sign users in with it, each with its own
//! defaults: openid-client (JavaScript, `tests/browser/openid_client_rp.mjs`), Authlib with Flask
//! and pyoidc (Python, `tests/rp/*.py`), and a single-page app in Chromium on another origin
//! (`tests/browser/spa.mjs`). Each runs as a tiny web app on a random loopback port; the test
//! plays the user's browser (a cookie jar that follows redirects) and, where wxlogin asks for a
//! fresh login, the user's phone in the sandbox. The library exchanges the code, checks the ID
//! token its own way, reads userinfo, and answers JSON the test asserts.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use url::Url;

use crate::browser::{chromium_scripts, CHROMIUM};
use crate::helpers::{node_scripts, rp_python, run_command, spawn_app_on, unix_now, TestApp};
use crate::oidc::userinfo;

/// A secret as the README tells operators to make one.
const SECRET: &str = "rp-library-secret-0123456789abcdef0123456789";
/// An id and a secret that HTTP Basic's form-url-encoding changes (RFC 6749 §2.3.1).
const AWKWARD_ID: &str = "id-with_all.chars~";
const AWKWARD_SECRET: &str = "a secret: 100% +plus ~tilde -dash _under .dot 0123456789";

/// A relying-party web app (a Node or Python script) on a random loopback port.
struct RpApp {
    origin: String,
    child: Child,
    stdin: ChildStdin,
    stdout: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl RpApp {
    /// Starts `command` and waits for it to say where it listens; it learns the provider from
    /// [`RpApp::configure`], since the provider's clients file needs its redirect URI first.
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the relying party starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, stdout) = mpsc::channel();
        keep_lines(child.stdout.take().unwrap(), log.clone(), Some(tx));
        keep_lines(child.stderr.take().unwrap(), log.clone(), None);
        let stdin = child.stdin.take().unwrap();
        let mut rp = Self {
            origin: String::new(),
            child,
            stdin,
            stdout,
            log,
        };
        rp.origin = rp
            .wait_for("listening on ")
            .trim_start_matches("listening on ")
            .to_owned();
        rp
    }

    /// Hands the app its settings (one JSON line) and waits until it has discovered the provider.
    fn configure(&mut self, settings: Value) {
        writeln!(self.stdin, "{settings}").unwrap();
        self.wait_for("configured");
    }

    fn wait_for(&self, prefix: &str) -> String {
        loop {
            match self.stdout.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the relying party never said {prefix:?}:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// A `[[clients]]` entry registering this app's `/callback` (and `extra` TOML lines).
    fn registration(&self, id: &str, secret: Option<&str>, extra: &str) -> String {
        let secret = secret.map_or(String::new(), |s| format!("secret = \"{s}\"\n"));
        format!(
            "[[clients]]\nid = \"{id}\"\nname = \"The {id} app\"\nredirect_uris = [\"{}\"]\n{secret}{extra}\n",
            self.url("/callback")
        )
    }
}

impl Drop for RpApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- the relying party's output ---\n{}",
                self.log.lock().unwrap()
            );
        }
    }
}

fn keep_lines(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(lines) = &lines {
                let _ = lines.send(line);
            }
        }
    });
}

/// openid-client's app (tests that use it need `has_node`).
fn openid_client() -> RpApp {
    let mut command = Command::new("node");
    command
        .arg("openid_client_rp.mjs")
        .current_dir(node_scripts());
    RpApp::start(command)
}

/// The Python app `script` in tests/rp (tests that use it need `has_rp_venv`).
fn python_app(script: &str) -> RpApp {
    let mut command = Command::new(rp_python());
    command.arg(script).current_dir(rp_dir());
    RpApp::start(command)
}

fn rp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp")
}

/// A sandbox server with these `[[clients]]` entries.
async fn provider(registrations: &[String]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clients = dir.path().join("clients.toml");
    std::fs::write(&clients, registrations.concat()).unwrap();
    spawn_app_on(dir, &[("WXLOGIN_OIDC_CLIENTS", clients.to_str().unwrap())]).await
}

/// The settings every app takes: the issuer, and the client it is registered as.
fn settings(app: &TestApp, id: &str, secret: Option<&str>) -> Value {
    json!({"issuer": app.address, "client_id": id, "client_secret": secret})
}

/// The user's browser: keeps each origin's cookies, follows redirects itself.
struct Browser {
    http: reqwest::Client,
    cookies: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

/// Where following a link ends.
#[derive(Debug)]
enum Landing {
    /// wxlogin's login page, with the authorization request it goes back to once logged in.
    LoginPage { return_to: String },
    /// Any other page that does not redirect.
    Page { url: String, body: String },
}

impl Landing {
    /// The relying party's JSON answer.
    fn json(&self) -> Value {
        match self {
            Landing::Page { body, .. } => {
                serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON answer: {self:?}"))
            }
            Landing::LoginPage { .. } => panic!("sent to the login page: {self:?}"),
        }
    }
}

/// What a sign-in at a relying party came to.
struct SignIn {
    /// Whether wxlogin sent the user to its login page to scan afresh.
    scanned: bool,
    answer: Value,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::default(),
        }
    }

    /// A browser holding the wxlogin `session` cookie of a logged-in user.
    fn logged_in(app: &TestApp, session: &str) -> Self {
        let browser = Self::new();
        browser.set_cookie(&app.address, "wxlogin_session", session);
        browser
    }

    fn set_cookie(&self, url: &str, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .entry(origin(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.send(url, self.http.get(url)).await
    }

    /// Sends `request` (to `url`) with the origin's cookies, and keeps those it sets.
    async fn send(&self, url: &str, mut request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookies = self.cookies.lock().unwrap().get(&origin(url)).map(|jar| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        if let Some(cookies) = cookies.filter(|c| !c.is_empty()) {
            request = request.header(header::COOKIE, cookies);
        }
        let response = request.send().await.unwrap();
        let mut jars = self.cookies.lock().unwrap();
        let jar = jars.entry(origin(url)).or_default();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        response
    }

    /// Follows `url` and its redirects, stopping at wxlogin's login page or at a page.
    async fn follow(&self, app: &TestApp, url: &str) -> Landing {
        let mut url = Url::parse(url).unwrap();
        for _ in 0..10 {
            let response = self.get(url.as_str()).await;
            if !response.status().is_redirection() {
                return Landing::Page {
                    url: url.to_string(),
                    body: response.text().await.unwrap(),
                };
            }
            let location = response.headers()[header::LOCATION].to_str().unwrap();
            url = url.join(location).unwrap();
            if origin(url.as_str()) == origin(&app.address) && url.path() == "/" {
                let return_to = url.query_pairs().find(|(k, _)| k == "return_to");
                return Landing::LoginPage {
                    return_to: return_to.expect("the login page's return_to").1.into(),
                };
            }
        }
        panic!("more than 10 redirects, the last to {url}");
    }

    /// Signs in at `rp` (`GET /login?query`): wxlogin answers from the session the browser holds
    /// or, at its login page, the user `openid` scans afresh and the page goes back to the
    /// authorization; where wxlogin asks for consent, the user allows.
    async fn sign_in(&self, app: &TestApp, rp: &RpApp, query: &str, openid: &str) -> SignIn {
        let mut landing = self.follow(app, &rp.url(&format!("/login?{query}"))).await;
        let scanned = matches!(landing, Landing::LoginPage { .. });
        if let Landing::LoginPage { return_to } = landing {
            self.set_cookie(&app.address, "wxlogin_session", &app.scan_in(openid).await);
            landing = self.follow(app, &app.url(&return_to)).await;
            assert!(
                !matches!(landing, Landing::LoginPage { .. }),
                "sent to log in again after logging in"
            );
        }
        if let Some(consent) = consent_form(app, &landing) {
            landing = self.allow(app, consent).await;
        }
        SignIn {
            scanned,
            answer: landing.json(),
        }
    }

    /// The user presses Allow on wxlogin's consent page: the form's fields go back to its
    /// action with `consent=allow`; follows where that leads.
    async fn allow(&self, app: &TestApp, form: ConsentForm) -> Landing {
        let url = app.url(&form.action);
        let mut fields = form.fields;
        fields.push(("consent".into(), "allow".into()));
        let response = self.send(&url, self.http.post(&url).form(&fields)).await;
        assert!(
            response.status().is_redirection(),
            "consenting answered {}",
            response.status()
        );
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        let next = Url::parse(&url).unwrap().join(location).unwrap();
        self.follow(app, next.as_str()).await
    }
}

/// wxlogin's consent page: a form that posts the authorization request back, with buttons
/// `consent=allow|deny`.
struct ConsentForm {
    action: String,
    fields: Vec<(String, String)>,
}

/// The consent form, if `landing` is wxlogin's consent page. Read with string matching: the page
/// is wxlogin's own server-rendered HTML (hidden inputs, escaped values).
fn consent_form(app: &TestApp, landing: &Landing) -> Option<ConsentForm> {
    let Landing::Page { url, body } = landing else {
        return None;
    };
    if origin(url) != origin(&app.address) || !body.contains("name=\"consent\" value=\"allow\"") {
        return None;
    }
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let value = &tag[start..start + tag[start..].find('"')?];
        Some(
            value
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    let form = body.split("<form").nth(1)?;
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((attribute(tag, "name")?, attribute(tag, "value")?))
        })
        .collect();
    Some(ConsentForm {
        action: attribute(&form[..form.find('>')?], "action")?,
        fields,
    })
}

fn origin(url: &str) -> String {
    Url::parse(url).unwrap().origin().ascii_serialization()
}

/// The claims and userinfo of a sign-in that worked, for the client `id`, with the phone scope.
fn assert_signed_in(app: &TestApp, answer: &Value, id: &str, phone: &str) -> String {
    let claims = &answer["claims"];
    assert_eq!(claims["iss"], app.address.as_str(), "{answer}");
    assert_eq!(claims["aud"], id, "{answer}");
    assert!(claims["auth_time"].is_u64(), "{answer}");
    let sub = claims["sub"].as_str().expect("a sub").to_owned();
    assert_eq!(answer["userinfo"]["sub"], sub.as_str(), "{answer}");
    assert_eq!(answer["userinfo"]["phone_number"], phone, "{answer}");
    sub
}

/// openid-client with its defaults (client_secret_post, as the library picks for a secret;
/// PKCE S256, state and nonce as its examples do): the code flow, the ID token, userinfo by GET.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_signs_in_with_its_defaults() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oNode", "13800000401").await);

    let signed = browser.sign_in(&app, &rp, "", "oNode").await;
    assert!(!signed.scanned);
    let sub = assert_signed_in(&app, &signed.answer, "node-app", "+8613800000401");
    assert_ne!(sub, "oNode");
}

/// client_secret_basic with an id and a secret that form-url-encoding changes: openid-client
/// encodes both before base64 (RFC 6749 §2.3.1), wxlogin must decode them.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_authenticates_by_basic_with_an_id_and_secret_that_need_encoding() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration(AWKWARD_ID, Some(AWKWARD_SECRET), "")]).await;
    let mut settings = settings(&app, AWKWARD_ID, Some(AWKWARD_SECRET));
    settings["auth"] = json!("client_secret_basic");
    rp.configure(settings);
    let browser = Browser::logged_in(&app, &app.sign_up("oAwkward", "13800000402").await);

    let signed = browser.sign_in(&app, &rp, "", "oAwkward").await;
    assert_signed_in(&app, &signed.answer, AWKWARD_ID, "+8613800000402");
}

/// openid-client, signed in an hour ago as far as `max_age=0` is concerned, must be sent to scan
/// again, and checks the ID token's `auth_time` itself; a long `max_age` reuses the session.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_with_max_age_0_gets_a_fresh_login() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oMaxAge", "13800000403").await);
    // The session is older than 0 seconds once a second has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let scan_from = unix_now();

    let fresh = browser.sign_in(&app, &rp, "max_age=0", "oMaxAge").await;
    assert!(fresh.scanned, "max_age=0 answered from the old session");
    assert_signed_in(&app, &fresh.answer, "node-app", "+8613800000403");
    let auth_time = fresh.answer["claims"]["auth_time"].as_u64().unwrap();
    assert!(auth_time >= scan_from, "{}", fresh.answer);

    let reused = browser.sign_in(&app, &rp, "max_age=3600", "oMaxAge").await;
    assert!(!reused.scanned);
    assert_eq!(reused.answer["claims"]["auth_time"], auth_time);
}

/// `prompt=none` answers from the session, or `login_required` without one (openid-client turns
/// it into its error); `prompt=login` always sends the user to scan, and `auth_time` is the new
/// login's.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_prompt_none_and_login() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oPrompt", "13800000404").await);
    // A first sign-in, so that prompt=none finds the user's consent (if asked) remembered.
    browser.sign_in(&app, &rp, "", "oPrompt").await;

    let silent = browser.sign_in(&app, &rp, "prompt=none", "oPrompt").await;
    assert!(!silent.scanned);
    assert_signed_in(&app, &silent.answer, "node-app", "+8613800000404");
    let stranger = Browser::new()
        .follow(&app, &rp.url("/login?prompt=none"))
        .await;
    assert_eq!(stranger.json()["error"], "login_required", "{stranger:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let scan_from = unix_now();
    let again = browser.sign_in(&app, &rp, "prompt=login", "oPrompt").await;
    assert!(again.scanned, "prompt=login answered from the session");
    let auth_time = again.answer["claims"]["auth_time"].as_u64().unwrap();
    assert!(auth_time >= scan_from, "{}", again.answer);
}

/// The other `prompt` values: `consent` shows the consent page again though consent was given,
/// `login consent` makes the user scan first, and `none` with anything else is `invalid_request`.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_prompt_consent_and_combinations() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oConsent", "13800000405").await);
    // A first sign-in, so that whatever consent there is to remember is remembered.
    let first = browser.sign_in(&app, &rp, "", "oConsent").await;
    assert_signed_in(&app, &first.answer, "node-app", "+8613800000405");

    let invalid = browser
        .follow(&app, &rp.url("/login?prompt=none%20login"))
        .await;
    assert_eq!(invalid.json()["error"], "invalid_request", "{invalid:?}");

    // Consent given once is asked again, from the session, with prompt=consent...
    let landing = browser.follow(&app, &rp.url("/login?prompt=consent")).await;
    let form = consent_form(&app, &landing).expect("prompt=consent shows the consent page");
    let asked = browser.allow(&app, form).await.json();
    assert_signed_in(&app, &asked, "node-app", "+8613800000405");
    // ...and after a fresh scan with prompt=login consent.
    let both = browser
        .sign_in(&app, &rp, "prompt=login%20consent", "oConsent")
        .await;
    assert!(
        both.scanned,
        "prompt=login consent answered from the session"
    );
    assert_signed_in(&app, &both.answer, "node-app", "+8613800000405");
}

/// openid-client's `buildEndSessionUrl` sends the browser to wxlogin's end_session_endpoint with
/// the ID token as hint: wxlogin ends the session, revokes its tokens, and sends the browser back
/// to the registered post-logout URI with the `state`.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_logs_out_through_the_end_session_endpoint() {
    let mut rp = openid_client();
    let logged_out = format!(
        "post_logout_redirect_uris = [\"{}\"]\n",
        rp.url("/logged-out")
    );
    let app = provider(&[rp.registration("node-app", Some(SECRET), &logged_out)]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let session = app.sign_up("oLogout", "13800000406").await;
    let browser = Browser::logged_in(&app, &session);
    let signed = browser.sign_in(&app, &rp, "", "oLogout").await;
    let id_token = signed.answer["id_token"].as_str().unwrap();
    let access_token = signed.answer["access_token"].as_str().unwrap();

    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", id_token)
        .append_pair("state", "bye now")
        .finish();
    let back = browser
        .follow(&app, &rp.url(&format!("/logout?{query}")))
        .await;
    let Landing::Page { url, .. } = &back else {
        panic!("{back:?}");
    };
    assert!(url.starts_with(&rp.url("/logged-out")), "{back:?}");
    assert_eq!(back.json()["state"], "bye now");

    assert_eq!(app.me(&session).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        userinfo(&app, access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let after = browser.follow(&app, &rp.url("/login")).await;
    assert!(
        matches!(after, Landing::LoginPage { .. }),
        "the browser is still logged in to wxlogin: {after:?}"
    );
}

/// openid-client's `tokenIntrospection` (RFC 7662) and `tokenRevocation` (RFC 7009): the access
/// token is active and names the user, then revoked, then inactive and refused by userinfo.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_introspects_and_revokes_an_access_token() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "node-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oRevoke", "13800000407").await);
    let signed = browser.sign_in(&app, &rp, "", "oRevoke").await;
    let sub = assert_signed_in(&app, &signed.answer, "node-app", "+8613800000407");
    let token = signed.answer["access_token"].as_str().unwrap();
    let ask = |path: &str| rp.url(&format!("{path}?token={token}"));

    let active = browser.follow(&app, &ask("/introspect")).await.json();
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], "node-app", "{active}");
    assert_eq!(active["sub"], sub.as_str(), "{active}");
    assert!(
        active["scope"].as_str().unwrap().contains("phone"),
        "{active}"
    );

    let revoked = browser.follow(&app, &ask("/revoke")).await.json();
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let inactive = browser.follow(&app, &ask("/introspect")).await.json();
    assert_eq!(inactive["active"], false, "{inactive}");
    assert_eq!(
        userinfo(&app, token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// openid-client verifying ID token signatures (`enableNonRepudiationChecks`) keeps the JWKS it
/// fetched at the first sign-in in its cache (oauth4webapi refetches only after 5 minutes, or for
/// an unknown key after a minute): a token issued right after `wxlogin rotate-key` verifies.
#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn openid_client_with_its_cached_jwks_verifies_a_token_right_after_rotate_key() {
    let mut rp = openid_client();
    let app = provider(&[rp.registration("node-app", Some(SECRET), "")]).await;
    let mut settings = settings(&app, "node-app", Some(SECRET));
    settings["verify_signatures"] = json!(true);
    rp.configure(settings);
    let browser = Browser::logged_in(&app, &app.sign_up("oRotate", "13800000408").await);
    let before = browser.sign_in(&app, &rp, "", "oRotate").await;
    let sub = assert_signed_in(&app, &before.answer, "node-app", "+8613800000408");

    let data_dir = app.data_dir.path().display().to_string();
    let (status, _, stderr) = run_command(&["rotate-key"], &[("WXLOGIN_DATA_DIR", &data_dir)]);
    assert!(status.success(), "{stderr}");

    let after = browser.sign_in(&app, &rp, "", "oRotate").await;
    assert_eq!(
        assert_signed_in(&app, &after.answer, "node-app", "+8613800000408"),
        sub
    );
}

/// Authlib's Flask client with its defaults (client_secret_basic, ID token validated through the
/// JWKS, userinfo by GET), and registered `token_endpoint_auth_method: client_secret_post`.
#[tokio::test]
#[cfg_attr(
    not(has_rp_venv),
    ignore = "needs the venv tests/rp/.venv (README: Prerequisites)"
)]
async fn authlib_with_flask_signs_in_with_client_secret_basic_and_post() {
    let (mut basic, mut post) = (python_app("authlib_rp.py"), python_app("authlib_rp.py"));
    let app = provider(&[
        basic.registration("flask-basic", Some(SECRET), ""),
        post.registration("flask-post", Some(SECRET), ""),
    ])
    .await;
    basic.configure(settings(&app, "flask-basic", Some(SECRET)));
    let mut post_settings = settings(&app, "flask-post", Some(SECRET));
    post_settings["auth"] = json!("client_secret_post");
    post.configure(post_settings);
    let browser = Browser::logged_in(&app, &app.sign_up("oFlask", "13800000409").await);

    let mut subs = Vec::new();
    for (rp, id) in [(&basic, "flask-basic"), (&post, "flask-post")] {
        let signed = browser.sign_in(&app, rp, "", "oFlask").await;
        subs.push(assert_signed_in(&app, &signed.answer, id, "+8613800000409"));
        assert!(
            signed.answer["claims"]["nonce"].is_string(),
            "{}",
            signed.answer
        );
    }
    assert_ne!(subs[0], subs[1], "each client gets its own pairwise sub");
}

/// pyoidc with its defaults: client_secret_basic, the ID token verified through the JWKS.
#[tokio::test]
#[cfg_attr(
    not(has_rp_venv),
    ignore = "needs the venv tests/rp/.venv (README: Prerequisites)"
)]
async fn pyoidc_signs_in_with_client_secret_basic() {
    let (app, answer) = pyoidc_sign_in().await;
    let claims = &answer["claims"];
    assert_eq!(claims["iss"], app.address.as_str(), "{answer}");
    assert_eq!(claims["aud"], json!(["pyoidc-app"]), "{answer}");
    assert_eq!(claims["phone_number"], "+8613800000410", "{answer}");
}

/// pyoidc's default userinfo request: POST with the access token in the form body (RFC 6750 §2.2).
#[tokio::test]
#[cfg_attr(
    not(has_rp_venv),
    ignore = "needs the venv tests/rp/.venv (README: Prerequisites)"
)]
async fn pyoidc_reads_userinfo_by_its_default_post_body() {
    let (_app, answer) = pyoidc_sign_in().await;
    assert_eq!(
        answer["userinfo"]["sub"], answer["claims"]["sub"],
        "{answer}"
    );
    assert_eq!(answer["userinfo"]["phone_number"], "+8613800000410");
}

/// A sign-in through pyoidc's app: the provider and the app's answer.
async fn pyoidc_sign_in() -> (TestApp, Value) {
    let mut rp = python_app("pyoidc_rp.py");
    let app = provider(&[rp.registration("pyoidc-app", Some(SECRET), "")]).await;
    rp.configure(settings(&app, "pyoidc-app", Some(SECRET)));
    let browser = Browser::logged_in(&app, &app.sign_up("oPyoidc", "13800000410").await);
    let signed = browser.sign_in(&app, &rp, "", "oPyoidc").await;
    (app, signed.answer)
}

/// A single-page app, a public client with PKCE, on another origin than wxlogin's: openid-client's
/// browser build in Chromium discovers wxlogin, exchanges the code and reads userinfo by CORS, and
/// so does an origin in the client's `allowed_origins`; an origin registered nowhere can read
/// neither the token endpoint nor userinfo, even with a valid token.
#[tokio::test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs Chromium, Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn a_browser_app_on_another_origin_signs_in_with_pkce_through_cors() {
    let scripts = chromium_scripts();
    let mut command = Command::new("node");
    command
        .arg("spa.mjs")
        .current_dir(scripts)
        .env("CHROMIUM", CHROMIUM);
    let mut spa = RpApp::start(command);
    let listed = spa.wait_for("origin listed ")["origin listed ".len()..].to_owned();
    spa.wait_for("origin stranger ");
    let allowed = format!("allowed_origins = [\"{listed}\"]\n");
    let app = provider(&[spa.registration("spa", None, &allowed)]).await;
    let mut settings = settings(&app, "spa", None);
    settings["session"] = json!(app.sign_up("oSpa", "13800000411").await);
    spa.configure(settings);

    let line = |prefix: &str| -> Value {
        serde_json::from_str(&spa.wait_for(prefix)[prefix.len()..]).unwrap()
    };
    let signed = line("signed in ");
    assert_signed_in(&app, &signed, "spa", "+8613800000411");
    let listed = line("probe listed ");
    assert_eq!(listed["jwks"], 200, "{listed}");
    assert_eq!(listed["userinfo"], 200, "{listed}");
    assert_eq!(
        listed["token"], 400,
        "the made-up code's refusal is readable: {listed}"
    );
    let stranger = line("probe stranger ");
    for endpoint in ["userinfo", "token"] {
        assert!(
            stranger[endpoint]
                .as_str()
                .is_some_and(|s| s.starts_with("blocked")),
            "{endpoint} is readable from an origin registered nowhere: {stranger}"
        );
    }
}
