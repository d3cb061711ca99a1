//! The official account's replies in WeChat as operator-editable templates: the defaults
//! (`reply_templates.toml`, in Chinese) overlaid by the file `WXLOGIN_REPLIES` names. Every
//! key and placeholder is checked at start, so a typo stops the start instead of showing a
//! user `{sitename}` in WeChat.

use std::collections::HashMap;
use std::path::Path;

const DEFAULTS: &str = include_str!("reply_templates.toml");

/// Each reply and the placeholders it may use.
const REPLIES: &[(&str, &[&str])] = &[
    ("logged_in", &["site"]),
    ("need_bind", &["site"]),
    ("already_scanned", &["site"]),
    ("expired", &["site"]),
    ("denied", &["site"]),
    ("code_used", &["site"]),
    ("code_unknown", &["site"]),
    ("throttled", &["site", "minutes"]),
    ("too_many_scans", &["site", "minutes"]),
    ("how_to", &["site"]),
    ("how_to_after_follow", &["site"]),
    ("confirm_request", &["site", "device", "ip", "time"]),
];

/// The replies in force, with the site's name to fill in.
#[derive(Clone, Debug)]
pub struct Replies {
    texts: HashMap<&'static str, String>,
    site: String,
}

impl Replies {
    /// The defaults, overlaid by the TOML file at `path` if given. The error names the
    /// problem (and the file), for the operator.
    pub fn load(path: Option<&Path>, site: String) -> Result<Self, String> {
        let mut replies = Self {
            texts: HashMap::new(),
            site,
        };
        replies
            .overlay(DEFAULTS)
            .expect("the default replies are valid");
        if let Some(path) = path {
            let file = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            replies
                .overlay(&file)
                .map_err(|problem| format!("{}: {problem}", path.display()))?;
        }
        Ok(replies)
    }

    fn overlay(&mut self, toml_text: &str) -> Result<(), String> {
        let table: toml::Table = toml_text.parse().map_err(|e| format!("not TOML: {e}"))?;
        for (key, value) in table {
            let Some(&(name, allowed)) = REPLIES.iter().find(|(name, _)| *name == key) else {
                let known: Vec<&str> = REPLIES.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown reply {key:?}; the replies are {}",
                    known.join(", ")
                ));
            };
            let toml::Value::String(text) = value else {
                return Err(format!("reply {key} must be a string"));
            };
            for placeholder in placeholders(&text).map_err(|e| format!("reply {key}: {e}"))? {
                if !allowed.contains(&placeholder) {
                    return Err(format!(
                        "reply {key} has an unknown placeholder {{{placeholder}}}; it may use {}",
                        allowed
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            }
            self.texts.insert(name, text);
        }
        Ok(())
    }

    /// The reply `key`, its placeholders filled with the site's name and `values`.
    pub fn render(&self, key: &str, values: &[(&str, &str)]) -> String {
        let template = self
            .texts
            .get(key)
            .unwrap_or_else(|| panic!("no reply {key:?}"));
        let site = [("site", self.site.as_str())];
        site.iter()
            .chain(values)
            .fold(template.clone(), |text, (name, value)| {
                text.replace(&format!("{{{name}}}"), value)
            })
    }
}

/// The `{name}`s of a template.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("a { is never closed by }")? + open;
        names.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_has_a_default() {
        let replies = Replies::load(None, "商城".into()).unwrap();
        for (key, _) in REPLIES {
            assert!(!replies.render(key, &[]).is_empty(), "{key}");
        }
        assert!(replies.render("how_to", &[]).contains("「商城」"));
    }

    #[test]
    fn a_file_overrides_some_and_keeps_the_rest() {
        let mut replies = Replies::load(None, "Shop".into()).unwrap();
        replies
            .overlay("logged_in = \"Welcome back to {site}!\"")
            .unwrap();
        assert_eq!(replies.render("logged_in", &[]), "Welcome back to Shop!");
        assert!(replies.render("expired", &[]).contains("二维码已过期"));
        assert_eq!(
            replies
                .overlay("throttled = \"wait {minutes} min\"")
                .map(|_| replies.render("throttled", &[("minutes", "3")])),
            Ok("wait 3 min".into())
        );
    }

    #[test]
    fn unknown_keys_placeholders_and_types_are_refused() {
        let mut replies = Replies::load(None, "Shop".into()).unwrap();
        let problem = |text: &str, replies: &mut Replies| replies.overlay(text).unwrap_err();
        assert!(problem("loged_in = \"x\"", &mut replies).contains("unknown reply \"loged_in\""));
        assert!(problem("need_bind = \"{sitename}\"", &mut replies)
            .contains("unknown placeholder {sitename}"));
        assert!(problem("logged_in = \"{minutes}\"", &mut replies).contains("{minutes}"));
        assert!(problem("expired = \"{site\"", &mut replies).contains("never closed"));
        assert!(problem("expired = 3", &mut replies).contains("must be a string"));
    }
}
