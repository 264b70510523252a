//! Who the citizen is, with personal data kept out of `Debug` output.

use std::fmt;

use crate::api::IdentityLevel;

/// A 12-digit personal identification number (số định danh cá nhân).
///
/// Its `Debug` and `Display` show only the masked form, so it can never leak
/// into logs by accident; [`CitizenId::expose`] gives the digits to code that
/// must send them upstream.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId(String);

impl CitizenId {
    /// Parses 12 ASCII digits whose first three are a province code.
    /// The error names what is wrong without echoing the value.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value.len() != 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a personal identification number has exactly 12 digits");
        }
        // The first three digits are the province of birth registration, coded
        // 001-096 (the codes of the 63 provinces before 2025, which ID numbers keep).
        let province: u16 = value[..3].parse().unwrap_or(0);
        if !(1..=96).contains(&province) {
            return Err("a personal identification number starts with a province code from 001 to 096");
        }
        Ok(Self(value.to_owned()))
    }

    /// The digits, for code that must send them upstream. Never log them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The number with all but its last 4 digits masked: `********6789`.
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len().saturating_sub(4)..];
        format!("{}{tail}", "*".repeat(self.0.len().saturating_sub(4)))
    }
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({})", self.masked())
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A bearer token as presented by the caller. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, for code that verifies or forwards it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(<{} bytes redacted>)", self.0.len())
    }
}

/// An authenticated citizen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Their personal identification number.
    pub citizen_id: CitizenId,
    /// The assurance level of their account.
    pub identity_level: IdentityLevel,
    /// The token they presented, so that adapters can call upstreams on their
    /// behalf.
    pub token: BearerToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_id_is_masked_in_debug_and_display() {
        let id = CitizenId::parse("079203001234").unwrap();
        assert_eq!(format!("{id:?}"), "CitizenId(********1234)");
        assert_eq!(id.to_string(), "********1234");
        assert_eq!(id.expose(), "079203001234");
    }

    #[test]
    fn citizen_id_rejects_bad_shapes_without_echoing_them() {
        for bad in ["", "12345678901", "0792030012345", "07920300123a", "999203001234", "000203001234"] {
            let err = CitizenId::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !err.contains(bad));
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = BearerToken::new("secret.jwt.value");
        assert!(!format!("{t:?}").contains("secret"));
    }

    proptest::proptest! {
        /// Only 12 digits from a province code 001-096 parse; anything else
        /// is refused with a reason, and Debug never shows the digits.
        #[test]
        fn id_numbers_parse_or_are_refused(value in "[0-9]{0,14}|.{0,20}") {
            match CitizenId::parse(&value) {
                Ok(id) => {
                    proptest::prop_assert_eq!(value.len(), 12);
                    let shown = format!("{id:?}");
                    proptest::prop_assert!(!shown.contains(&value[..8]));
                }
                Err(why) => proptest::prop_assert!(!why.is_empty()),
            }
        }
    }
}
