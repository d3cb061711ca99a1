//! The relying parties allowed to use wxlogin, read from the TOML file `WXLOGIN_OIDC_CLIENTS`.
//!
//! ```toml
//! [[clients]]
//! id = "shop"
//! name = "The shop"
//! redirect_uris = ["https://shop.example.com/oauth2/callback"]
//! post_logout_redirect_uris = ["https://shop.example.com/"]   # absent: none
//! secret = "..."   # absent: a public client, which must use PKCE
//! id_token_signed_response_alg = "RS256"   # absent: ES256
//! allowed_origins = ["https://app.example.com"]   # browser origins besides the redirect URIs'
//! unionid = true   # may ask for the `unionid` scope (absent: may not)
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use url::Url;
use wxlogin_storage::constant_time_eq;

use super::keys::SigningAlg;

/// Shorter than this, a client secret could be guessed online.
const MIN_SECRET_LEN: usize = 32;

pub struct Client {
    pub id: String,
    pub name: String,
    /// How this client's ID tokens are signed.
    pub id_token_signed_response_alg: SigningAlg,
    /// May ask for the `unionid` scope: the unionid joins a user across the operator's
    /// accounts and apps, which the pairwise `sub` keeps apart, so the operator opts each in.
    pub unionid: bool,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    secret: Option<String>,
}

impl Client {
    /// Public clients (no secret) run in browsers or apps that can't keep one; they must use PKCE.
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Redirect URIs match exactly, as registered: no prefix or pattern matching.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Where the client may send users back after signing out (RP-Initiated Logout), matched
    /// exactly too.
    pub fn allows_post_logout_redirect(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `secret` (or its absence) authenticates this client.
    pub fn authenticates(&self, secret: Option<&str>) -> bool {
        match (&self.secret, secret) {
            (Some(ours), Some(theirs)) => constant_time_eq(ours.as_bytes(), theirs.as_bytes()),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.by_id.keys().collect();
        f.debug_struct("Clients").field("ids", &ids).finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

pub struct Clients {
    by_id: HashMap<String, Client>,
    /// The origins browsers may read the token, userinfo and revocation answers from: those of
    /// every client's redirect URIs and `allowed_origins`, serialized as browsers send `Origin`.
    origins: HashSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    clients: Vec<Spanned<RawClient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    name: String,
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    secret: Option<String>,
    #[serde(default)]
    id_token_signed_response_alg: SigningAlg,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    unionid: bool,
}

impl Clients {
    pub fn get(&self, id: &str) -> Option<&Client> {
        self.by_id.get(id)
    }

    /// The clients' ids, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// Whether a browser page of `origin` (an `Origin` header's value) may read our answers.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.contains(origin)
    }

    /// The ID-token signing algorithms the clients registered, each once.
    pub fn signing_algs(&self) -> BTreeSet<SigningAlg> {
        self.by_id
            .values()
            .map(|c| c.id_token_signed_response_alg)
            .collect()
    }

    /// Reads and checks the clients file; an error names the file and the line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(line, problem)| match line {
            Some(line) => format!("{} line {line}: {problem}", path.display()),
            None => format!("{}: {problem}", path.display()),
        })
    }

    /// Parses the file's text; an error carries its 1-based line where known.
    fn parse(text: &str) -> Result<Self, (Option<usize>, String)> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(span.start));
            (line, e.message().to_owned())
        })?;
        let mut by_id = HashMap::new();
        let mut origins = HashSet::new();
        for client in file.clients {
            let line = Some(line_of(client.span().start));
            let (client, its_origins) =
                check(client.into_inner()).map_err(|problem| (line, problem))?;
            if by_id.contains_key(&client.id) {
                return Err((line, format!("client id {:?} appears twice", client.id)));
            }
            by_id.insert(client.id.clone(), client);
            origins.extend(its_origins);
        }
        if by_id.is_empty() {
            return Err((None, "no [[clients]] entry".into()));
        }
        Ok(Self { by_id, origins })
    }
}

/// Ids and secrets may hold any printable character (RFC 6749 Appendix A allows every visible
/// ASCII one; we take Unicode too): HTTP Basic carries them form-encoded, and the token
/// endpoint decodes them (§2.3.1). Control characters are refused: they would reach the logs,
/// and NUL separates the id from the openid in the pairwise `sub`'s HMAC input.
fn printable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// An `allowed_origins` entry, `scheme://host[:port]` and nothing more, as browsers send it.
fn origin(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && !raw.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then(|| url.origin().ascii_serialization())
}

/// A checked client, and the browser origins it brings.
fn check(raw: RawClient) -> Result<(Client, Vec<String>), String> {
    if !printable(&raw.id) {
        return Err(format!(
            "client id {:?} must be printable characters, without control characters",
            raw.id
        ));
    }
    if let Some(secret) = &raw.secret {
        if secret.chars().count() < MIN_SECRET_LEN || !printable(secret) {
            return Err(format!("the secret of {:?} must be at least {MIN_SECRET_LEN} printable characters (e.g. openssl rand -hex 32)", raw.id));
        }
    }
    if raw.redirect_uris.is_empty() {
        return Err(format!("{:?} has no redirect_uris", raw.id));
    }
    let redirect_url = |uri: &String| {
        Url::parse(uri)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.fragment().is_none())
            .ok_or_else(|| {
                format!(
                    "redirect URI {uri:?} of {:?} must be an absolute http(s) URL without a fragment",
                    raw.id
                )
            })
    };
    let mut origins = Vec::new();
    for uri in &raw.redirect_uris {
        origins.push(redirect_url(uri)?.origin().ascii_serialization());
    }
    // Logout is a navigation: these URIs' origins get no CORS.
    for uri in &raw.post_logout_redirect_uris {
        redirect_url(uri)?;
    }
    for raw_origin in &raw.allowed_origins {
        let Some(allowed) = origin(raw_origin) else {
            return Err(format!(
                "allowed origin {raw_origin:?} of {:?} must be scheme://host[:port] (http or https), without a path or a trailing slash",
                raw.id
            ));
        };
        origins.push(allowed);
    }
    let client = Client {
        id: raw.id,
        name: raw.name,
        id_token_signed_response_alg: raw.id_token_signed_response_alg,
        unionid: raw.unionid,
        redirect_uris: raw.redirect_uris,
        post_logout_redirect_uris: raw.post_logout_redirect_uris,
        secret: raw.secret,
    };
    Ok((client, origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_good_file_parses() {
        let text = format!(
            "[[clients]]\nid = \"shop\"\nname = \"Shop\"\nredirect_uris = [\"https://shop.example/cb\"]\npost_logout_redirect_uris = [\"https://shop.example/bye\"]\nsecret = \"{SECRET}\"\n\n\
             [[clients]]\nid = \"spa\"\nname = \"App\"\nredirect_uris = [\"http://localhost:3000/cb\"]\nid_token_signed_response_alg = \"RS256\"\n"
        );
        let clients = Clients::parse(&text).unwrap();
        let shop = clients.get("shop").unwrap();
        assert!(!shop.is_public() && shop.authenticates(Some(SECRET)));
        assert!(!shop.authenticates(Some("0123456789abcdef0123456789abcdeX")));
        assert!(!shop.authenticates(None));
        assert!(shop.allows_redirect("https://shop.example/cb"));
        assert!(!shop.allows_redirect("https://shop.example/cb/"));
        assert!(shop.allows_post_logout_redirect("https://shop.example/bye"));
        assert!(!shop.allows_post_logout_redirect("https://shop.example/cb"));
        let spa = clients.get("spa").unwrap();
        assert!(spa.is_public() && spa.authenticates(None) && !spa.authenticates(Some(SECRET)));
        assert!(!format!("{shop:?}").contains(SECRET));
        assert_eq!(shop.id_token_signed_response_alg, SigningAlg::ES256);
        assert_eq!(spa.id_token_signed_response_alg, SigningAlg::RS256);
        assert_eq!(
            clients.signing_algs(),
            [SigningAlg::ES256, SigningAlg::RS256].into()
        );
    }

    #[test]
    fn ids_and_secrets_may_hold_characters_that_need_encoding() {
        let text = "[[clients]]\nid = \"rp-1_.~%+: é\"\nname = \"RP\"\nredirect_uris = [\"https://rp.example/cb\"]\n\
                    secret = \"s-_.~%+:&= ü/0123456789abcdef0123456789\"\n";
        let clients = Clients::parse(text).unwrap();
        let rp = clients.get("rp-1_.~%+: é").unwrap();
        assert!(rp.authenticates(Some("s-_.~%+:&= ü/0123456789abcdef0123456789")));
        assert!(!rp.authenticates(Some(
            "s-_.~%25%2B%3A%26%3D+%C3%BC%2F0123456789abcdef0123456789"
        )));
    }

    #[test]
    fn origins_are_those_of_redirect_uris_and_allowed_origins() {
        let text = "[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://A.example:443/cb?x=1\", \"http://localhost:3000/cb\"]\n\
                    allowed_origins = [\"https://app.example:8443\", \"https://other.example:443\"]\n";
        let clients = Clients::parse(text).unwrap();
        for allowed in [
            "https://a.example",
            "http://localhost:3000",
            "https://app.example:8443",
            "https://other.example",
        ] {
            assert!(clients.allows_origin(allowed), "{allowed}");
        }
        for refused in [
            "http://a.example",
            "https://a.example:8443",
            "https://a.example.evil.example",
            "https://app.example",
            "http://localhost:3001",
            "null",
            "*",
            "",
        ] {
            assert!(!clients.allows_origin(refused), "{refused}");
        }
    }

    #[test]
    fn an_allowed_origin_is_scheme_host_and_port_alone() {
        assert_eq!(
            origin("https://App.Example:8443").as_deref(),
            Some("https://app.example:8443")
        );
        assert_eq!(
            origin("http://localhost").as_deref(),
            Some("http://localhost")
        );
        for bad in [
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?x",
            "https://app.example#x",
            "https://user@app.example",
            "ftp://app.example",
            "app.example",
            "*",
            "null",
        ] {
            assert_eq!(origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize)] = &[
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\nsecret = 5\n", 5),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\n\n[[clients]]\nid = \"b\"\nname = \"B\"\nredirect_uris = [\"https://a/cb#x\"]\n", 6),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\n[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\n", 5),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\nsecret = \"short\"\n", 1),
            ("[[clients]]\nid = \"a\\tb\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\n", 1),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\nallowed_origins = [\"https://a.example/app\"]\n", 1),
            ("\n\n[[clients]\nid = \"a\"\n", 3),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\nid_token_signed_response_alg = \"none\"\n", 5),
            ("[[clients]]\nid = \"a\"\nname = \"A\"\nredirect_uris = [\"https://a/cb\"]\n\n[[clients]]\nid = \"b\"\nname = \"B\"\nredirect_uris = [\"https://b/cb\"]\npost_logout_redirect_uris = [\"/bye\"]\n", 6),
        ];
        for (text, line) in cases {
            let (got, _) = Clients::parse(text).err().unwrap();
            assert_eq!(got, Some(*line), "{text}");
        }
        assert!(Clients::parse("").is_err());
    }
}
