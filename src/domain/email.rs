use std::{fmt, str::FromStr};

use crate::error::Error;

/// Longest address SMTP allows (RFC 5321: 64 + 1 + 255).
pub const MAX_LEN: usize = 320;

/// An email address, trimmed and lower-cased so that uniqueness is
/// case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        // Counted before trimming: what was sent is what is limited.
        if raw.len() > MAX_LEN {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_LEN} characters"),
            ));
        }
        // The crate accepts display names ("A <a@b>"); we want the bare address.
        match email_address::EmailAddress::from_str(trimmed) {
            Ok(addr) if addr.email() == trimmed && addr.domain().contains('.') => {
                Ok(Self(trimmed.to_lowercase()))
            }
            _ => Err(Error::invalid(
                field,
                "is not a valid email address (expected name@example.com)",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases() {
        let e = Email::parse("email", "  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "alice@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "Alice <alice@example.com>",
            "a b@example.com",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long = format!("{}@example.com", "a".repeat(400));
        assert!(Email::parse("email", &long).is_err());
    }
}
