//! The transport-free core: what each RPC does, independent of gRPC or JSON.
//!
//! Services take domain types (the transports parse requests into them, so
//! every bad input becomes an [`crate::error::Error`] naming its field), do
//! the work through `store`, and return domain records. They never see a
//! token or a proto type: the caller's [`crate::domain::UserId`] is handed
//! in by the auth layer.

pub mod accounts;
pub mod channels;
pub mod events;
pub mod incidents;
pub mod maintenance;
pub mod page_token;
pub mod stats;
pub mod status_pages;
pub mod statuses;
pub mod urls;

use std::sync::Arc;

pub use accounts::AccountService;
pub use channels::{ChannelService, ChannelSettings, DeliveryPage, DeliveryQuery};
pub use incidents::{IncidentPage, IncidentQuery, IncidentService};
pub use maintenance::MaintenanceService;
pub use stats::{Stats, StatsQuery, StatsRow, StatsService};
pub use status_pages::StatusPageService;
pub use statuses::{StatusPage, StatusQuery, StatusService};
pub use urls::{UrlService, UrlSettings};

/// Everything the transports need, cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub accounts: Arc<AccountService>,
    pub urls: Arc<UrlService>,
    pub statuses: Arc<StatusService>,
    pub incidents: Arc<IncidentService>,
    pub stats: Arc<StatsService>,
    pub channels: Arc<ChannelService>,
    pub events: Arc<events::EventService>,
    pub status_pages: Arc<StatusPageService>,
    pub maintenance: Arc<MaintenanceService>,
}
