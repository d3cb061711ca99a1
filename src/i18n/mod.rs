//! The languages of the pages people read: one string table per language (`zh-CN.json`,
//! `en.json` next to this file), which the server-rendered pages and the login page's script
//! both read. A third language is a copy of a table, translated, plus one line in [`Lang`].
//!
//! Which language a request gets: `?lang=`, then the language cookie that `?lang=` sets (so
//! the choice survives navigation: the return to an authorization, the consent page), then
//! OpenID Connect's `ui_locales`, then `Accept-Language`, then `WXLOGIN_DEFAULT_LANG`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::HttpRequest;

use crate::http::page::escape_html;

/// The cookie remembering `?lang=`.
pub const LANG_COOKIE: &str = "wxlogin_lang";
/// A year: a language is a lasting preference.
const LANG_COOKIE_MAX_AGE_DAYS: i64 = 365;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    En,
}

/// Every language, in the order the page's switch lists them.
pub const LANGS: [Lang; 2] = [Lang::ZhCn, Lang::En];

type Table = BTreeMap<String, String>;

fn table_of(json: &str) -> Table {
    serde_json::from_str(json).expect("the string tables are valid JSON objects of strings")
}

static ZH_CN: LazyLock<Table> = LazyLock::new(|| table_of(include_str!("zh-CN.json")));
static EN: LazyLock<Table> = LazyLock::new(|| table_of(include_str!("en.json")));

impl Lang {
    /// The BCP 47 tag, as `<html lang>`, `?lang=` and `WXLOGIN_DEFAULT_LANG` spell it.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    fn table(self) -> &'static Table {
        match self {
            Lang::ZhCn => &ZH_CN,
            Lang::En => &EN,
        }
    }

    /// A language tag's language, if we have it: any Chinese (`zh`, `zh-Hans`, `zh-TW`) reads
    /// Simplified Chinese, the only Chinese there is; any English reads English.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?;
        LANGS
            .into_iter()
            .find(|lang| primary.eq_ignore_ascii_case(&lang.tag()[..2]))
    }

    /// The text of `key`, with each `{name}` of `params` filled in.
    pub fn text(self, key: &str, params: &[(&str, &str)]) -> String {
        let template = self
            .table()
            .get(key)
            .unwrap_or_else(|| panic!("string {key:?} missing from the {} table", self.tag()));
        fill(template, params)
    }

    /// The text of `key` as HTML: the text escaped, `params` already HTML (escaped by the caller).
    pub fn html(self, key: &str, params: &[(&str, &str)]) -> String {
        fill(&escape_html(&self.text(key, &[])), params)
    }

    /// The strings whose keys start with one of `prefixes`, as JSON, for a page's script.
    pub fn table_json(self, prefixes: &[&str]) -> String {
        let strings: BTreeMap<&String, &String> = self
            .table()
            .iter()
            .filter(|(key, _)| prefixes.iter().any(|prefix| key.starts_with(prefix)))
            .collect();
        serde_json::to_string(&strings).expect("a table serialises")
    }

    /// The language this request reads (see the module's documentation).
    pub fn of(request: &HttpRequest, default: Lang) -> Lang {
        let query = url::form_urlencoded::parse(request.query_string().as_bytes());
        let mut asked = None;
        let mut ui_locales = None;
        for (name, value) in query {
            match &*name {
                "lang" => asked = asked.or_else(|| Lang::from_tag(&value)),
                "ui_locales" => {
                    ui_locales = ui_locales.or_else(|| value.split(' ').find_map(Lang::from_tag))
                }
                _ => {}
            }
        }
        let remembered = || {
            request
                .cookie(LANG_COOKIE)
                .and_then(|cookie| Lang::from_tag(cookie.value()))
        };
        let accepted = || {
            request
                .headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|value| value.to_str().ok())
                .and_then(accepted_language)
        };
        asked
            .or_else(remembered)
            .or(ui_locales)
            .or_else(accepted)
            .unwrap_or(default)
    }

    /// The cookie to set when the request chose its language by `?lang=`.
    pub fn cookie_if_asked(request: &HttpRequest) -> Option<Cookie<'static>> {
        let asked = url::form_urlencoded::parse(request.query_string().as_bytes())
            .find(|(name, _)| name == "lang")
            .and_then(|(_, value)| Lang::from_tag(&value))?;
        Some(
            Cookie::build(LANG_COOKIE, asked.tag())
                .path("/")
                .same_site(SameSite::Lax)
                .http_only(true)
                .max_age(actix_web::cookie::time::Duration::days(
                    LANG_COOKIE_MAX_AGE_DAYS,
                ))
                .finish(),
        )
    }
}

impl std::str::FromStr for Lang {
    type Err = ();

    /// `WXLOGIN_DEFAULT_LANG`: exactly a tag of [`LANGS`].
    fn from_str(s: &str) -> Result<Self, ()> {
        LANGS.into_iter().find(|lang| lang.tag() == s).ok_or(())
    }
}

/// The language `Accept-Language` prefers most among ours, if any (RFC 9110 §12.5.4: `q=0`
/// means "not this one").
fn accepted_language(header: &str) -> Option<Lang> {
    let mut ranked: Vec<(f32, Lang)> = header
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let lang = Lang::from_tag(parts.next()?)?;
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (quality > 0.0).then_some((quality, lang))
        })
        .collect();
    // Stable: among equal weights, the first listed wins.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.first().map(|(_, lang)| *lang)
}

/// `template` with each `{name}` replaced by its value.
fn fill(template: &str, params: &[(&str, &str)]) -> String {
    params
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

/// `template` with each `{{key}}` replaced by the HTML of `key` in `lang`'s table, or by the
/// HTML `values` gives for it.
pub fn render(template: &str, lang: Lang, values: &[(&str, &str)]) -> String {
    let mut html = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("every {{ is closed") + start;
        let key = &rest[start + 2..end];
        match values.iter().find(|(name, _)| *name == key) {
            Some((_, value)) => html.push_str(value),
            None => html.push_str(&lang.html(key, &[])),
        }
        rest = &rest[end + 2..];
    }
    html.push_str(rest);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_the_same_strings_and_placeholders() {
        let placeholders = |text: &str| {
            let mut names: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_owned()))
                .collect();
            names.sort();
            names
        };
        let reference = Lang::ZhCn.table();
        for lang in LANGS {
            let table = lang.table();
            assert_eq!(
                table.keys().collect::<Vec<_>>(),
                reference.keys().collect::<Vec<_>>(),
                "{}",
                lang.tag()
            );
            for (key, text) in table {
                assert_eq!(placeholders(text), placeholders(&reference[key]), "{key}");
            }
        }
    }

    #[test]
    fn accept_language_is_ranked_by_weight() {
        assert_eq!(
            accepted_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Some(Lang::ZhCn)
        );
        assert_eq!(
            accepted_language("en-US,en;q=0.9,zh-CN;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            accepted_language("fr-FR, zh-TW;q=0.5, en;q=0.7"),
            Some(Lang::En)
        );
        assert_eq!(accepted_language("en;q=0, zh;q=0.1"), Some(Lang::ZhCn));
        assert_eq!(accepted_language("fr, de"), None);
        assert_eq!(accepted_language("*"), None);
        assert_eq!(accepted_language("en;q=abc"), None);
    }

    #[test]
    fn the_default_setting_takes_exact_tags() {
        assert_eq!("zh-CN".parse(), Ok(Lang::ZhCn));
        assert_eq!("en".parse(), Ok(Lang::En));
        assert_eq!("fr".parse::<Lang>(), Err(()));
        assert_eq!("EN".parse::<Lang>(), Err(()));
    }

    #[test]
    fn templates_are_filled_and_escaped() {
        assert_eq!(
            render("<p>{{oidc.allow}}</p>{{x}}", Lang::En, &[("x", "<b>")]),
            "<p>Allow</p><b>"
        );
        assert_eq!(
            Lang::En.html("oidc.asking", &[("client", "<strong>A&amp;B</strong>")]),
            "<strong>A&amp;B</strong> asks you to log in with WeChat."
        );
    }
}
