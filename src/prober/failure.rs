//! How a failed probe says why: a short message of the deepest cause.

use std::error::Error as StdError;

/// The longest message a status keeps (bytes, cut at a character).
const MAX_MESSAGE: usize = 200;

/// The message of a probe that ran out of time.
pub(super) const TIMED_OUT: &str = "no complete answer within the probe timeout";

/// `s`, cut to at most [`MAX_MESSAGE`] bytes.
pub(super) fn short(s: &str) -> String {
    let mut s = s.to_owned();
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The message of `e`'s deepest cause (what went wrong, without the
/// layers that passed it on).
pub(super) fn deepest(e: &(dyn StdError + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}
