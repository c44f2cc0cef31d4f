//! What one probe concluded: its verdict and the assertions it failed. The
//! prober writes them (`domain::assertion` judges), the state machine
//! (`domain::state`) and the rollups (`domain::rollup`) read them.

use serde::{Deserialize, Serialize};

/// What one probe says of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Up,
    Degraded,
    Down,
    /// Probed inside a maintenance window (`domain::maintenance`): stored,
    /// shown, counted apart, and never moves the URL toward `UP` or `DOWN`.
    Maintenance,
    /// The probe failed while the prober doubted its own network (its
    /// canaries failed, or most of its probes failed across many hosts at
    /// once: see `prober::doubt`). Says nothing of the URL: the state
    /// machine skips it and rollups count it as missed.
    Unknown,
}

impl Verdict {
    /// The verdict on a probe judged by the default rule alone (no
    /// assertions, or a result from before assertions): `UP` for a response
    /// with no error and a status in 200–399, else `DOWN`.
    pub fn by_default(status_code: i32, error_kind: Option<i16>) -> Self {
        if error_kind.is_none() && (200..=399).contains(&status_code) {
            Self::Up
        } else {
            Self::Down
        }
    }

    /// As stored: the `UrlState` number, or `None` for a row from before
    /// verdicts were stored (judged by the default rule).
    pub fn from_stored(n: Option<i16>, status_code: i32, error_kind: Option<i16>) -> Self {
        match n {
            Some(2) => Self::Up,
            Some(3) => Self::Degraded,
            Some(4) => Self::Down,
            Some(6) => Self::Maintenance,
            Some(7) => Self::Unknown,
            _ => Self::by_default(status_code, error_kind),
        }
    }

    /// The number it is stored as: the `UrlState` of the same name.
    pub fn stored(self) -> i16 {
        match self {
            Self::Up => 2,
            Self::Degraded => 3,
            Self::Down => 4,
            Self::Maintenance => 6,
            Self::Unknown => 7,
        }
    }
}

/// A failed assertion, as a probe records it: its index in the URL's list
/// and a short message saying what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAssertion {
    pub index: u32,
    pub message: String,
}
