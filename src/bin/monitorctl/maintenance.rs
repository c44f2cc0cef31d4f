//! `monitorctl maintenance add|list|delete`: a user's maintenance windows.

use std::time::Duration;

use clap::Subcommand;
use monitor::proto::monitor::v1 as pb;

use super::{Failure, Saved, authed, duration_text, print_json, table, time_text};

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Add a window: --end for one stretch, or --every RRULE with --duration
    /// for a recurring one (e.g. --every "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2"
    /// --duration 2h --tz Europe/Paris). Probes inside it are stored as
    /// MAINTENANCE, open no incident and send nothing.
    #[command(group(clap::ArgGroup::new("when").required(true)))]
    Add {
        /// When it starts (RFC 3339, e.g. 2030-01-01T02:00:00Z); default: now.
        /// For a recurrence, its first possible start (its time of day is used).
        #[arg(long, value_name = "TIME")]
        start: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// When a one-off window ends (RFC 3339).
        #[arg(long, value_name = "TIME", group = "when")]
        end: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// An RFC 5545 RRULE: FREQ=DAILY or WEEKLY, with BYDAY, BYHOUR, INTERVAL, UNTIL.
        #[arg(long, value_name = "RRULE", group = "when", requires = "duration")]
        every: Option<String>,
        /// How long each occurrence lasts (e.g. 30m, 2h).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "every")]
        duration: Option<Duration>,
        /// The recurrence's time zone (IANA name); default UTC.
        #[arg(long = "tz", value_name = "ZONE", default_value = "")]
        time_zone: String,
        /// Only this URL; repeat for more (none: all your URLs, present and future).
        #[arg(long = "url", value_name = "ID")]
        url_ids: Vec<i64>,
    },
    /// List your windows.
    List,
    /// Delete a window.
    Delete { id: i64 },
}

const HEADER: [&str; 6] = ["ID", "URLS", "START", "END / RULE", "DURATION", "ZONE"];

fn ts(t: chrono::DateTime<chrono::Utc>) -> monitor::proto::Timestamp {
    monitor::proto::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn rows(windows: &[pb::MaintenanceWindow]) -> String {
    let mut t = table(&HEADER);
    for w in windows {
        let urls = if w.url_ids.is_empty() {
            "all".to_owned()
        } else {
            w.url_ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let when = if w.recurrence.is_empty() {
            time_text(w.end_time.as_ref())
        } else {
            w.recurrence.clone()
        };
        t.add_row(vec![
            w.id.to_string(),
            urls,
            time_text(w.start_time.as_ref()),
            when,
            duration_text(w.duration.as_ref()),
            w.time_zone.clone(),
        ]);
    }
    t.to_string()
}

/// `monitorctl maintenance …`.
pub async fn run(
    client: &mut monitor::client::Client,
    json: bool,
    saved: &Saved,
    command: &MaintenanceCommand,
) -> Result<(), Failure> {
    match command {
        MaintenanceCommand::Add {
            start,
            end,
            every,
            duration,
            time_zone,
            url_ids,
        } => {
            let start = start.map_or_else(chrono::Utc::now, |s| s.to_utc());
            let window = pb::MaintenanceWindow {
                url_ids: url_ids.clone(),
                start_time: Some(ts(start)),
                end_time: end.map(|e| ts(e.to_utc())),
                recurrence: every.clone().unwrap_or_default(),
                duration: duration.map(Into::into),
                time_zone: time_zone.clone(),
                ..Default::default()
            };
            let res = client
                .create_maintenance_window(authed(
                    pb::CreateMaintenanceWindowRequest {
                        window: Some(window),
                    },
                    saved,
                )?)
                .await?
                .into_inner();
            if json {
                return print_json(&res);
            }
            println!("{}", rows(std::slice::from_ref(&res)));
        }
        MaintenanceCommand::List => {
            let res = client
                .list_maintenance_windows(authed(pb::ListMaintenanceWindowsRequest {}, saved)?)
                .await?
                .into_inner();
            if json {
                print_json(&res)?;
            } else if res.windows.is_empty() {
                println!(
                    "no maintenance windows; add one with `monitorctl maintenance add --end TIME`"
                );
            } else {
                println!("{}", rows(&res.windows));
            }
        }
        MaintenanceCommand::Delete { id } => {
            let res = client
                .delete_maintenance_window(authed(
                    pb::DeleteMaintenanceWindowRequest { id: *id },
                    saved,
                )?)
                .await?
                .into_inner();
            if json {
                print_json(&res)?;
            } else {
                println!("deleted maintenance window {id}");
            }
        }
    }
    Ok(())
}
