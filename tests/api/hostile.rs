//! Hostile targets: one that trickles a byte a second, one that sends a
//! 100 MB body, one that redirects forever, one that hangs. The prober stays
//! within its timeout and body limit and records the right outcome.
//! (A name that resolves to 127.0.0.1 — `localhost` — is refused as
//! `BLOCKED`: `prober::the_ssrf_guard_blocks_loopback_unless_allowed`.)

use std::time::{Duration, Instant};

use monitor::proto::monitor::v1::ErrorKind;

use crate::{
    helpers::{Backend, prober_settings, spawn_app_with},
    target::Target,
};

#[allow(clippy::cast_precision_loss)] // probe latencies are seconds, not 2^52
fn seconds(d: Option<&pbjson_types::Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_cost_at_most_the_timeout_and_the_body_limit() {
    let target = Target::start().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        prober_settings(s);
        s.prober.probe.timeout = Duration::from_secs(2);
        s.prober.probe.follow_redirects = 5;
        s.prober.probe.max_body_kib = 64;
    })
    .await;
    let (_, token) = app.user().await;
    let started = Instant::now();
    let trickle = app
        .add_url_every(&token, &target.url("/trickle"), 600)
        .await;
    let huge = app.add_url_every(&token, &target.url("/huge"), 600).await;
    let forever = app.add_url_every(&token, &target.url("/loop"), 600).await;
    let hang = app.add_url_every(&token, &target.url("/slow"), 600).await;

    let first = |id| {
        let app = &app;
        let token = token.clone();
        async move {
            app.wait_for_statuses(&token, id, 1, Duration::from_secs(15))
                .await
                .remove(0)
        }
    };
    let s = first(trickle.id).await;
    // The status line came (a real 200, latency to the headers); the body
    // did not finish within the timeout, and the record says so.
    assert_eq!(s.status_code, 200, "{s:?}");
    assert!(
        [ErrorKind::Timeout as i32, ErrorKind::Body as i32].contains(&s.error_kind),
        "{s:?}"
    );
    assert!(!s.error_message.is_empty());

    let s = first(huge.id).await;
    // 64 KiB read, the rest never downloaded: a 200, quickly.
    assert_eq!(
        (s.status_code, s.error_kind),
        (200, ErrorKind::Unspecified as i32),
        "{s:?}"
    );
    assert!(seconds(s.latency.as_ref()) < 1.0, "{s:?}");

    let s = first(forever.id).await;
    assert_eq!(
        (s.status_code, s.error_kind),
        (0, ErrorKind::Redirect as i32),
        "{s:?}"
    );
    assert_eq!(
        target.hits("/loop").len(),
        6,
        "the first request and 5 redirects, no more"
    );

    let s = first(hang.id).await;
    assert_eq!(
        (s.status_code, s.error_kind),
        (0, ErrorKind::Timeout as i32),
        "{s:?}"
    );
    assert!(seconds(s.latency.as_ref()) < 2.5, "{s:?}");

    // All four within one timeout of each other, not one after another.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
