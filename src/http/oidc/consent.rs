//! Consent the user can see: the client asking, by its registered name, and whether it will get
//! the phone number. Said on the login page an authorization sends the user to, and asked on
//! the consent page once they are logged in; the answer comes back as a POST of the
//! authorization request with `consent=allow` or `deny` and a proof that this browser's session
//! read the page (`session::form_proof`), so no other site can consent for a user.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::pages::{form, page};
use crate::http::page::escape_html;
use crate::oidc::clients::Client;
use crate::oidc::codes::Scope;
use crate::oidc::Provider;

/// The purpose of the consent form's proof (see `session::form_proof`).
pub(super) const PROOF_PURPOSE: &str = "oidc consent";
/// The parameters the consent form adds to the authorization request.
pub(super) const ANSWER: &str = "consent";
pub(super) const PROOF: &str = "consent_proof";

/// Who asks and what they will get, as HTML: the client's name is the operator's text, escaped.
pub(super) fn asking(client: &Client, scope: Scope) -> String {
    let name = escape_html(&client.name);
    let phone = if scope.phone {
        format!(" {name} will get your mobile number.")
    } else {
        String::new()
    };
    // The unionid joins the user across the operator's accounts and apps: say so.
    let unionid = if scope.unionid {
        format!(" {name} will get your WeChat unionid, the id your other apps of this operator know you by.")
    } else {
        String::new()
    };
    format!("<strong>{name}</strong> asks you to log in with WeChat.{phone}{unionid}")
}

/// The sentence for the login page a request to `/oauth/authorize?{query}` sent the user to,
/// if it names a registered client.
pub(in crate::http) fn login_page_notice(provider: &Provider, query: &str) -> Option<String> {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    };
    let client = provider.clients.get(&param("client_id")?)?;
    let scope = param("scope")
        .as_deref()
        .and_then(Scope::parse)
        .unwrap_or_default();
    Some(asking(client, scope))
}

/// The consent page: the authorization request (`fields`) posted back with the answer.
pub(super) fn consent_page(
    client: &Client,
    scope: Scope,
    mut fields: Vec<(String, String)>,
    proof: String,
) -> HttpResponse {
    fields.push((PROOF.into(), proof));
    let name = escape_html(&client.name);
    page(
        StatusCode::OK,
        "Allow this site?",
        &format!(
            "<p>{}</p>\n<p>Your answer is remembered: next time {name} asks, a scan is enough.</p>\n{}",
            asking(client, scope),
            form(
                "/oauth/authorize",
                &fields,
                &[(ANSWER, "allow", "Allow"), (ANSWER, "deny", "Decline")]
            )
        ),
    )
}
