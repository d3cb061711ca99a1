//! The pages the OpenID Connect endpoints show users themselves: refusals, consent, signing
//! out. Their text is ours; what comes from a request or the clients file (a client's name,
//! a form's hidden fields) is escaped, never markup. Titles are keys of the string tables.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use crate::http::page::escape_html;
use crate::i18n::Lang;

/// A page: the login page's stylesheet, no script, and no other site may frame it (a consent
/// or sign-out button must not be clicked through someone else's page).
pub(in crate::http) fn page(
    status: StatusCode,
    lang: Lang,
    title: &str,
    body: &str,
) -> HttpResponse {
    let (tag, title) = (lang.tag(), lang.html(title, &[]));
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html>\n<html lang=\"{tag}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><link rel=\"stylesheet\" href=\"/login.css\"></head>\n\
             <body><main class=\"card\"><h1>{title}</h1>\n{body}</main></body></html>\n"
        ))
}

/// The 400 page for a request that can't be answered by redirect. `reason` is our HTML (with
/// at most a registered client's name, escaped), never the request's.
pub(super) fn refusal(lang: Lang, reason: String) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        lang,
        "oidc.cannot_log_in",
        &format!("<p>{reason}</p><p>{}</p>", lang.html("oidc.go_back", &[])),
    )
}

/// A form posting `fields` back to `action` (ours), with one submit button per
/// (name, value, label) in `buttons` (an empty name: a button that sends no value).
pub(super) fn form(
    action: &str,
    fields: &[(String, String)],
    buttons: &[(&str, &str, &str)],
) -> String {
    let mut html = format!("<form method=\"post\" action=\"{action}\">\n");
    for (name, value) in fields {
        html.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape_html(name),
            escape_html(value)
        ));
    }
    for (i, (name, value, label)) in buttons.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"secondary\"" };
        let named = if name.is_empty() {
            String::new()
        } else {
            format!(" name=\"{name}\" value=\"{value}\"")
        };
        html.push_str(&format!(
            "<button type=\"submit\"{named}{class}>{label}</button>\n"
        ));
    }
    html.push_str("</form>\n");
    html
}
