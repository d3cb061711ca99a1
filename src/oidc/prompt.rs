//! The authorization request's `prompt` (OpenID Connect Core §3.1.2.1): a space-separated list.

/// What `prompt` asks of the login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    /// No page at all: a code at once, or an error (`login_required`, `consent_required`).
    pub none: bool,
    /// Authenticate afresh, whatever session there is. `select_account` asks the same of us: the
    /// account is whichever WeChat user scans, so choosing one is scanning again.
    pub login: bool,
    /// Ask for consent even if the user gave it before.
    pub consent: bool,
}

impl Prompt {
    /// The prompt of a request (`None`: no `prompt` parameter). `none` with any other value is
    /// an error (§3.1.2.1: "an error is returned"); unknown values are otherwise ignored.
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        let values: Vec<&str> = raw
            .unwrap_or_default()
            .split(' ')
            .filter(|v| !v.is_empty())
            .collect();
        let has = |value: &str| values.contains(&value);
        let prompt = Self {
            none: has("none"),
            login: has("login") || has("select_account"),
            consent: has("consent"),
        };
        if prompt.none && values.iter().any(|v| *v != "none") {
            return Err("prompt=none can't be combined with other values");
        }
        Ok(prompt)
    }
}

/// The values [`Prompt::parse`] acts on, as discovery lists them.
pub const SUPPORTED: [&str; 4] = ["none", "login", "consent", "select_account"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_values() {
        assert_eq!(Prompt::parse(None), Ok(Prompt::default()));
        assert_eq!(Prompt::parse(Some("")), Ok(Prompt::default()));
        assert_eq!(
            Prompt::parse(Some("login consent")),
            Ok(Prompt {
                login: true,
                consent: true,
                none: false
            })
        );
        assert_eq!(
            Prompt::parse(Some("select_account")),
            Ok(Prompt {
                login: true,
                ..Prompt::default()
            })
        );
        assert_eq!(
            Prompt::parse(Some("none")),
            Ok(Prompt {
                none: true,
                ..Prompt::default()
            })
        );
        // Unknown values are ignored, and doubled spaces are no value.
        assert_eq!(
            Prompt::parse(Some("consent  shout")),
            Ok(Prompt {
                consent: true,
                ..Prompt::default()
            })
        );
    }

    #[test]
    fn none_stands_alone() {
        for raw in [
            "none login",
            "consent none",
            "none none2",
            "none select_account",
        ] {
            assert!(Prompt::parse(Some(raw)).is_err(), "{raw}");
        }
        assert!(Prompt::parse(Some("none none")).is_ok());
    }
}
