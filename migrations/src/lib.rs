//! Schema migrations for the monitor, applied by the server at start-up.
//!
//! Every migration must run on both SQLite (the embedded default) and
//! Postgres, so it is written with sea-query's builders, never raw SQL (a plain
//! `SELECT` read for a backfill, and Postgres storage parameters, which
//! have no builder, excepted).
//! Migrations are append-only: a landed migration is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_init;
mod m20261123_000002_schedule;
mod m20261125_000003_url_count;
mod m20261126_000004_host_rates;
mod m20261126_000005_states_incidents;
mod m20261126_000006_url_periods;
mod m20261126_000007_rollups;
mod m20261126_000008_health_check;
mod m20261126_000009_fillfactor;
mod m20261126_000010_assertions;
mod m20261126_000011_notifications;
mod m20261126_000012_status_pages;
mod m20261127_000013_maintenance;
mod m20261127_000015_reminders;
mod m20261127_000016_dependencies;
mod m20261127_000017_statuses_without_url_key;
mod m20261127_000018_narrow_statuses;
mod m20261127_000019_packed_statuses;
mod m20261128_000020_rolled_to;
mod m20261129_000021_url_schedules;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_init::Migration),
            Box::new(m20261123_000002_schedule::Migration),
            Box::new(m20261125_000003_url_count::Migration),
            Box::new(m20261126_000004_host_rates::Migration),
            Box::new(m20261126_000005_states_incidents::Migration),
            Box::new(m20261126_000006_url_periods::Migration),
            Box::new(m20261126_000007_rollups::Migration),
            Box::new(m20261126_000008_health_check::Migration),
            Box::new(m20261126_000009_fillfactor::Migration),
            Box::new(m20261126_000010_assertions::Migration),
            Box::new(m20261126_000011_notifications::Migration),
            Box::new(m20261126_000012_status_pages::Migration),
            Box::new(m20261127_000013_maintenance::Migration),
            Box::new(m20261127_000015_reminders::Migration),
            Box::new(m20261127_000016_dependencies::Migration),
            Box::new(m20261127_000017_statuses_without_url_key::Migration),
            Box::new(m20261127_000018_narrow_statuses::Migration),
            Box::new(m20261127_000019_packed_statuses::Migration),
            Box::new(m20261128_000020_rolled_to::Migration),
            Box::new(m20261129_000021_url_schedules::Migration),
        ]
    }
}
