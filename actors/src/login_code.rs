use std::fmt;

use rand::Rng;

/// The six digits a user sends the account as a text message to log in, in code mode.
///
/// Unlike a scene id it is short enough to type, so it is guessable: what protects it is
/// that it lives only as long as its scene, is unique among live scenes, and that guessing
/// is throttled per WeChat user (see the callback).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginCode(u32);

const SPACE: u32 = 1_000_000;

impl LoginCode {
    pub fn random() -> Self {
        Self(rand::thread_rng().gen_range(0..SPACE))
    }

    /// Exactly six ASCII digits, as the page shows them.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| raw.parse().ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginCode(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_as_six_digits_and_parse_back() {
        for _ in 0..100 {
            let code = LoginCode::random();
            let shown = code.to_string();
            assert_eq!(shown.len(), 6);
            assert_eq!(LoginCode::parse(&shown), Some(code));
        }
        assert_eq!(LoginCode(42).to_string(), "000042");
    }

    #[test]
    fn only_six_plain_digits_are_codes() {
        for raw in [
            "",
            "12345",
            "1234567",
            "12 456",
            "+12345",
            "１２３４５６",
            "12345a",
        ] {
            assert_eq!(LoginCode::parse(raw), None, "{raw}");
        }
    }
}
