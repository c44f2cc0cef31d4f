//! Domain types that parse, not validate: holding one proves the value is
//! acceptable, so the services never re-check. Each parse error names the
//! request field it came from.

pub mod assertion;
pub mod channel;
pub mod email;
pub mod maintenance;
pub mod notification;
pub mod password;
pub mod period;
mod probe_result;
mod records;
pub mod rollup;
pub mod schedule;
pub mod sketch;
pub mod state;
pub mod status_page;
pub mod target_url;
pub mod url_update;
pub mod verdict;

pub use assertion::Assertions;
pub use channel::{
    ChannelRecord, ChannelTarget, ChannelUpdate, NewChannel, PAGERDUTY_EVENTS_URL, RoutingKey,
    SlackWebhook, WebhookSecret,
};
pub use email::Email;
pub use password::Password;
pub use period::{Period, PeriodBounds};
pub use probe_result::ProbeResult;
pub use records::{
    Account, Credentials, IncidentRecord, StatusRecord, UrlRecord, truncate_to_micros,
};
pub use schedule::Claim;
pub use target_url::TargetUrl;
pub use url_update::UrlUpdate;
pub use verdict::Verdict;

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);
