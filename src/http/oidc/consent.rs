//! Consent the user can see: the client asking, by its registered name, and whether it will get
//! the phone number. Said on the login page an authorization sends the user to, and asked on
//! the consent page once they are logged in; the answer comes back as a POST of the
//! authorization request with `consent=allow` or `deny` and a proof that this browser's session
//! read the page (`session::form_proof`), so no other site can consent for a user.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::pages::{form, page};
use crate::http::page::escape_html;
use crate::i18n::Lang;
use crate::oidc::clients::Client;
use crate::oidc::codes::Scope;
use crate::oidc::Provider;

/// The purpose of the consent form's proof (see `session::form_proof`).
pub(super) const PROOF_PURPOSE: &str = "oidc consent";
/// The parameters the consent form adds to the authorization request.
pub(super) const ANSWER: &str = "consent";
pub(super) const PROOF: &str = "consent_proof";

/// Who asks and what they will get, as HTML: the client's name is the operator's text, escaped.
pub(super) fn asking(client: &Client, scope: Scope, lang: Lang) -> String {
    let name = escape_html(&client.name);
    let strong = format!("<strong>{name}</strong>");
    let mut html = lang.html("oidc.asking", &[("client", &strong)]);
    if scope.phone {
        html.push(' ');
        html.push_str(&lang.html("oidc.asking_phone", &[("client", &name)]));
    }
    // The unionid joins the user across the operator's accounts and apps: say so.
    if scope.unionid {
        html.push(' ');
        html.push_str(&lang.html("oidc.asking_unionid", &[("client", &name)]));
    }
    html
}

/// The sentence for the login page a request to `/oauth/authorize?{query}` sent the user to,
/// if it names a registered client.
pub(in crate::http) fn login_page_notice(
    provider: &Provider,
    query: &str,
    lang: Lang,
) -> Option<String> {
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
    Some(asking(client, scope, lang))
}

/// The consent page: the authorization request (`fields`) posted back with the answer.
pub(super) fn consent_page(
    client: &Client,
    scope: Scope,
    mut fields: Vec<(String, String)>,
    proof: String,
    lang: Lang,
) -> HttpResponse {
    fields.push((PROOF.into(), proof));
    let name = escape_html(&client.name);
    page(
        StatusCode::OK,
        lang,
        "oidc.consent_title",
        &format!(
            "<p>{}</p>\n<p>{}</p>\n{}",
            asking(client, scope, lang),
            lang.html("oidc.consent_remembered", &[("client", &name)]),
            form(
                "/oauth/authorize",
                &fields,
                &[
                    (ANSWER, "allow", &lang.html("oidc.allow", &[])),
                    (ANSWER, "deny", &lang.html("oidc.decline", &[]))
                ]
            )
        ),
    )
}
