//! The login page at `/`: the reference integration sites copy. Plain HTML, CSS and JavaScript
//! compiled into the binary, so there is no front-end build step and `cargo run` serves it all.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use url::Url;

use super::oidc::consent::login_page_notice;
use super::AppState;
use crate::i18n::{self, Lang, LANGS};

/// Scripts and styles only from this origin, QR images from here or WeChat, and no other
/// site may frame a page (clickjacking).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' https://mp.weixin.qq.com; frame-ancestors 'none'";

const LOGIN_PAGE: &str = include_str!("page/login.html");

/// The one place the login page is sent back to: the OpenID Connect authorization that sent
/// the user to log in.
const RETURN_PATH: &str = "/oauth/authorize";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(login_page))
        .route("/login.css", web::get().to(login_css))
        .route("/login.js", web::get().to(login_js));
}

#[utoipa::path(
    get,
    path = "/login.css",
    tag = "pages",
    responses((status = 200, description = "The login page's stylesheet", content_type = "text/css", body = String)),
)]
pub(super) async fn login_css() -> HttpResponse {
    asset("text/css", include_str!("page/login.css"))
}

#[utoipa::path(
    get,
    path = "/login.js",
    tag = "pages",
    responses((status = 200, description = "The login page's script", content_type = "text/javascript", body = String)),
)]
pub(super) async fn login_js() -> HttpResponse {
    asset("text/javascript", include_str!("page/login.js"))
}

/// A file compiled into the binary.
pub fn asset(content_type: &str, body: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(format!("{content_type}; charset=utf-8"))
        // Revalidate on every load, so a new release is never mixed with a cached old file.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body.into())
}

/// The page, told in `data-return-to` where to go once logged in, if `?return_to=` is a place
/// it may go. The server decides, so the page never interprets a URL from the query itself.
/// Sent by an authorization, it also names the client asking and what it will get. It is in
/// the request's language, and so are the strings its script shows (`data-text`); inside
/// WeChat's browser it offers web authorization (`data-in-wechat`) if the account has it, and
/// a phone may ask for a login code (`data-codes`) if the account takes them.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    params(
        ("return_to" = Option<String>, Query, description = "Where to go once logged in: only a path to /oauth/authorize on this origin is taken, anything else is ignored"),
        ("lang" = Option<String>, Query, description = "`zh-CN` or `en`: the page's language, remembered in the `wxlogin_lang` cookie"),
    ),
    responses((status = 200, description = "The login page", content_type = "text/html", body = String)),
)]
pub(super) async fn login_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let lang = Lang::of(&request, state.default_lang);
    let return_to = url::form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(name, _)| name == "return_to")
        .and_then(|(_, value)| allowed_return_to(&value));
    let query = return_to
        .as_deref()
        .and_then(|path| path.split_once('?'))
        .map_or("", |(_, query)| query);
    let asking = state
        .oidc
        .as_deref()
        .filter(|_| return_to.is_some())
        .and_then(|provider| login_page_notice(provider, query, lang))
        .map_or_else(String::new, |notice| {
            format!("<p id=\"asking\" class=\"asking\">{notice}</p>")
        });
    let mut body = format!(
        " data-text=\"{}\"",
        escape_html(&lang.table_json(&["js.", "login."]))
    );
    if let Some(path) = &return_to {
        body.push_str(&format!(" data-return-to=\"{}\"", escape_html(path)));
    }
    if state.modes.codes_accepted() {
        body.push_str(" data-codes");
    }
    if state.web_authorization.is_some() && in_wechat(&request) {
        body.push_str(" data-in-wechat");
    }
    let html = i18n::render(
        LOGIN_PAGE,
        lang,
        &[
            ("lang", lang.tag()),
            ("body", &body),
            ("langs", &language_links(lang, return_to.as_deref())),
            ("asking", &asking),
        ],
    );
    localized(&request, asset("text/html", html))
}

/// WeChat's in-app browser names itself so in its User-Agent.
fn in_wechat(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.contains("MicroMessenger"))
}

/// The page's language switch: a link per language, keeping where the page returns to.
fn language_links(current: Lang, return_to: Option<&str>) -> String {
    LANGS
        .into_iter()
        .map(|lang| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("lang", lang.tag());
            if let Some(path) = return_to {
                query.append_pair("return_to", path);
            }
            let current = if lang == current {
                " aria-current=\"true\""
            } else {
                ""
            };
            format!(
                "<a href=\"/?{}\" lang=\"{tag}\" hreflang=\"{tag}\"{current}>{}</a>",
                escape_html(&query.finish()),
                lang.html("lang.name", &[]),
                tag = lang.tag(),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `response`, remembering the language when the request chose it by `?lang=`.
pub fn localized(request: &HttpRequest, mut response: HttpResponse) -> HttpResponse {
    if let Some(cookie) = Lang::cookie_if_asked(request) {
        let _ = response.add_cookie(&cookie);
    }
    response
}

/// `raw` as a path and query on this origin, if it is an authorization request: anything
/// else (another site, a protocol-relative `//host`, backslashes, dot segments or encodings
/// that normalise elsewhere) is ignored. The page joins the answer to its own origin.
pub fn allowed_return_to(raw: &str) -> Option<String> {
    // Browsers read `\` as `/` and drop tabs and newlines: refuse them rather than guess.
    if !raw.starts_with('/') || raw.contains('\\') || raw.chars().any(char::is_control) {
        return None;
    }
    let base = Url::parse("http://wxlogin.invalid/").expect("a valid URL");
    let url = base.join(raw).ok()?;
    let on_origin = url.origin() == base.origin();
    (on_origin && url.path() == RETURN_PATH && url.fragment().is_none())
        .then(|| format!("{}?{}", url.path(), url.query().unwrap_or_default()))
}

/// Text made safe to put in HTML, inside an element or a quoted attribute.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::{allowed_return_to, escape_html, LOGIN_PAGE};
    use crate::i18n::{render, LANGS};

    #[test]
    fn the_page_has_every_string_in_every_language() {
        for lang in LANGS {
            // `render` panics on a string missing from a table.
            let html = render(
                LOGIN_PAGE,
                lang,
                &[("lang", ""), ("body", ""), ("langs", ""), ("asking", "")],
            );
            assert!(!html.contains("{{"), "{}", lang.tag());
        }
    }

    #[test]
    fn only_authorization_requests_on_this_origin_are_returned_to() {
        assert_eq!(
            allowed_return_to("/oauth/authorize?client_id=a&state=b").as_deref(),
            Some("/oauth/authorize?client_id=a&state=b")
        );
        // Dot segments that stay on the path are normalised, not refused.
        assert_eq!(
            allowed_return_to("/x/../oauth/authorize?a=1").as_deref(),
            Some("/oauth/authorize?a=1")
        );
        for hostile in [
            "//evil.example/x",
            "/.//evil.example/x",
            "/a/..//evil.example",
            "/%2e%2e//evil.example",
            "/%2F%2Fevil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "https://evil.example/oauth/authorize",
            "http://wxlogin.invalid/oauth/authorize",
            "/\t/evil.example",
            "/oauth/authorize\n",
            "javascript:alert(1)",
            "/oauth/authorize/../../..//evil.example",
            "/api/logout",
            "",
        ] {
            assert_eq!(allowed_return_to(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
