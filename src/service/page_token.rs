//! Keyset page tokens: `<kind>:<filter>:<last id>`, base64url. The filter
//! (a URL id, a channel id) is part of the token, so a token is only good
//! for the query that gave it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{Error, Result};

pub fn encode(kind: &str, filter: i64, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{filter}:{id}"))
}

/// `(filter, last id)` of a token of `kind`.
pub fn decode(kind: &str, token: &str) -> Option<(i64, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = raw
        .strip_prefix(kind)?
        .strip_prefix(':')?
        .splitn(2, ':')
        .map(str::parse::<i64>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// The last id of the previous page that `token` (of `kind`, for
/// `filter`) names; none for an empty token. INVALID_ARGUMENT naming
/// `page_token` for any other token.
pub fn before_id(kind: &str, filter: i64, token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    decode(kind, token)
        .filter(|(f, _)| *f == filter)
        .map(|(_, id)| Some(id))
        .ok_or_else(|| {
            Error::invalid(
                "page_token",
                "is not a token this server gave for this query; start again without it",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode("i", &encode("i", 7, 42)), Some((7, 42)));
        assert_eq!(decode("i", &encode("i", 0, 1)), Some((0, 1)));
        assert_eq!(decode("d", &encode("i", 7, 42)), None, "another kind's");
        assert_eq!(decode("i", "not-a-token"), None);
        assert_eq!(decode("i", &URL_SAFE_NO_PAD.encode("7:42")), None);
    }
}
