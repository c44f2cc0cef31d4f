use std::fmt;

use crate::error::Error;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// A password within the accepted length. Its `Debug` never shows it, so it
/// cannot leak through a log line.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(field: &'static str, raw: String) -> Result<Self, Error> {
        match raw.len() {
            0 => Err(Error::invalid(field, "is required")),
            n if n < MIN_LEN => Err(Error::invalid(
                field,
                format!("must be at least {MIN_LEN} bytes"),
            )),
            n if n > MAX_LEN => Err(Error::invalid(
                field,
                format!("must be at most {MAX_LEN} bytes"),
            )),
            _ => Ok(Self(raw)),
        }
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_bounds_are_in_bytes() {
        assert!(Password::parse("password", "1234567".into()).is_err());
        assert!(Password::parse("password", "12345678".into()).is_ok());
        assert!(Password::parse("password", "x".repeat(1024)).is_ok());
        assert!(Password::parse("password", "x".repeat(1025)).is_err());
        // Four two-byte characters are eight bytes.
        assert!(Password::parse("password", "éééé".into()).is_ok());
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let p = Password::parse("password", "hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
