//! What UpdateUrl changes, parsed: each field either stays as it is or gets
//! a value that is known to be acceptable.

use crate::error::Error;

use super::{Assertions, Period};

/// Longest name a user may give a URL, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Fewest and most probes in a row a threshold may ask for.
pub const MIN_THRESHOLD: u32 = 1;
pub const MAX_THRESHOLD: u32 = 100;

/// The changes to one URL: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlUpdate {
    /// `Some(None)`: no name of its own any more (it shows the URL).
    pub name: Option<Option<String>>,
    pub period: Option<Period>,
    pub paused: Option<bool>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    /// The whole new list (an empty one removes them all).
    pub assertions: Option<Assertions>,
    /// `Some(None)`: depends on nothing any more.
    pub depends_on: Option<Option<i64>>,
}

impl UrlUpdate {
    /// Whether it changes how the URL is scheduled (so the scheduler should look again).
    pub fn reschedules(&self) -> bool {
        self.period.is_some() || self.paused.is_some()
    }
}

/// A URL's name: at most [`MAX_NAME_CHARS`] characters and no control
/// characters, trimmed; empty means none (the URL shows as its name).
pub fn parse_name(field: &'static str, raw: &str) -> Result<Option<String>, Error> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "must not contain control characters (line breaks, tabs, ...)",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// A threshold: [`MIN_THRESHOLD`] to [`MAX_THRESHOLD`] probes in a row.
pub fn parse_threshold(field: &'static str, raw: i32) -> Result<u32, Error> {
    u32::try_from(raw)
        .ok()
        .filter(|n| (MIN_THRESHOLD..=MAX_THRESHOLD).contains(n))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("must be between {MIN_THRESHOLD} and {MAX_THRESHOLD} probes in a row"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_empty_means_none() {
        assert_eq!(
            parse_name("n", "  shop  ").unwrap().as_deref(),
            Some("shop")
        );
        assert_eq!(parse_name("n", "   ").unwrap(), None);
        assert!(parse_name("n", &"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(parse_name("n", &"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(parse_name("n", "a\nb").is_err());
        assert!(parse_name("n", "a\u{7f}b").is_err());
    }

    #[test]
    fn thresholds_are_one_to_a_hundred() {
        assert_eq!(parse_threshold("t", 1).unwrap(), 1);
        assert_eq!(parse_threshold("t", 100).unwrap(), 100);
        for bad in [0, -1, 101, i32::MAX] {
            assert!(parse_threshold("t", bad).is_err(), "{bad}");
        }
    }
}
