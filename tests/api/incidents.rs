//! URL state and incidents: from probes of a real target through the flush
//! to GetUrl and ListIncidents, and the flush's write of state and
//! incidents under redelivery and concurrent flushers.

use std::time::Duration;

use monitor::{
    domain::ProbeResult,
    proto::monitor::v1::{self as pb, UrlState},
    store::{incidents, outcomes},
};
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::Code;

use crate::{
    helpers::{Backend, authed, expect_code, prober_settings, spawn_app, spawn_app_with},
    target::Target,
};

/// A target answering 200 twice, 500 four times, then 200: with the
/// default thresholds (3 failures, 2 successes) one incident opens at the
/// third failure, dated by the first, and resolves at the second success,
/// dated by the first.
async fn a_run_of_failures_opens_one_incident_and_successes_resolve_it(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let url = app
        .add_url_every(&token, &target.url("/seq/++----+"), 1)
        .await;
    assert_eq!(url.state(), UrlState::Pending);
    assert_eq!(url.failure_threshold, 3);
    assert_eq!(url.success_threshold, 2);
    assert_eq!(url.name, url.url, "the name defaults to the URL");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let found = app.incidents(&token, url.id).await;
        if let Some(i) = found.first().filter(|i| i.resolved_at.is_some()) {
            break i.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resolved incident within 30 s: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let statuses = app.statuses(&token, url.id).await;
    let mut by_due: Vec<_> = statuses.iter().collect();
    by_due.sort_by_key(|s| {
        s.due_at.unwrap().seconds * 1_000_000_000 + i64::from(s.due_at.unwrap().nanos)
    });
    let codes: Vec<i32> = by_due.iter().map(|s| s.status_code).collect();
    assert_eq!(
        &codes[..7],
        &[200, 200, 500, 500, 500, 500, 200],
        "{codes:?}"
    );
    assert_eq!(incident.state(), UrlState::Down);
    assert_eq!(
        incident.opened_at, by_due[2].due_at,
        "opened at the first failure"
    );
    assert_eq!(
        incident.resolved_at, by_due[6].due_at,
        "resolved at the first success"
    );
    assert_eq!(incident.failed_probes, 4);
    let first = incident.first_failure.as_ref().unwrap();
    assert_eq!(first.status_code, 500);
    assert_eq!(first.id, by_due[2].id);
    assert_eq!(app.incidents(&token, url.id).await.len(), 1);

    let now = app.get_url(&token, url.id).await;
    assert_eq!(now.state(), UrlState::Up);
    assert_eq!(now.state_since, by_due[6].due_at);

    // Another user sees neither the URL nor its incidents.
    let (_, other) = app.user().await;
    expect_code(
        app.client
            .clone()
            .get_url(authed(pb::GetUrlRequest { id: url.id }, &other))
            .await,
        Code::NotFound,
    );
    expect_code(
        app.client
            .clone()
            .list_incidents(authed(
                pb::ListIncidentsRequest {
                    url_id: url.id,
                    ..Default::default()
                },
                &other,
            ))
            .await,
        Code::NotFound,
    );
    assert!(app.incidents(&other, 0).await.is_empty());
    // All of the owner's incidents, over JSON too.
    let (status, body) = app
        .get_json("/v1/incidents", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incidents"][0]["failedProbes"], 4, "{body}");
    let (status, body) = app
        .get_json(
            &format!("/v1/urls/{}", url.id),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "URL_STATE_UP", "{body}");
}

async fn alternating_results_open_no_incident(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let url = app
        .add_url_every(&token, &target.url("/seq/+-+-+-+-+-"), 1)
        .await;
    app.wait_for_statuses(&token, url.id, 10, Duration::from_secs(20))
        .await;
    // Let the last flush land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.incidents(&token, url.id).await.is_empty());
    assert_eq!(app.get_url(&token, url.id).await.state(), UrlState::Up);
}

fn failing(url_id: i64, due_ms: i64) -> ProbeResult {
    ProbeResult {
        url_id,
        due_ms,
        started_us: due_ms * 1000 + 5,
        status_code: 503,
        latency_us: 1_500,
        error_kind: None,
        error_message: None,
        ..Default::default()
    }
}

/// The buffer delivers at least once, and two flushers may hold batches of
/// one URL at once: each failure is stored once, and the incident it opens
/// is opened once.
async fn redelivered_and_concurrent_batches_open_each_incident_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/down").await;
    let t0 = 1_800_000_000_000;
    let batch: Vec<ProbeResult> = (0..6).map(|i| failing(url.id, t0 + i * 60_000)).collect();
    let all: Vec<&ProbeResult> = batch.iter().collect();
    let first = outcomes::write_batch(&app.db, &all).await.unwrap();
    assert_eq!((first.inserted, first.incidents_opened), (6, 1));
    // Delivered again: nothing.
    let again = outcomes::write_batch(&app.db, &all).await.unwrap();
    assert_eq!(again, outcomes::Written::default());
    // Two flushers with overlapping batches of the next failures.
    let more: Vec<ProbeResult> = (6..400).map(|i| failing(url.id, t0 + i * 60_000)).collect();
    let flusher = |db: sea_orm::DatabaseConnection, batch: Vec<ProbeResult>| {
        tokio::spawn(async move {
            outcomes::write_batch(&db, &batch.iter().collect::<Vec<_>>())
                .await
                .unwrap()
        })
    };
    let reversed = more.iter().rev().cloned().collect();
    let (ra, rb) = tokio::join!(
        flusher(app.db.clone(), more.clone()),
        flusher(app.db.clone(), reversed),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.inserted + rb.inserted, 394, "{ra:?} {rb:?}");
    assert_eq!(ra.incidents_opened + rb.incidents_opened, 0);
    assert_eq!(incidents::Entity::find().count(&app.db).await.unwrap(), 1);
    let listed = app.incidents(&token, url.id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].failed_probes, 400, "every failure counted once");
    assert_eq!(
        listed[0].opened_at.unwrap().seconds * 1000,
        t0,
        "opened at the first failure"
    );
    assert_eq!(app.get_url(&token, url.id).await.state(), UrlState::Down);
}

async fn incidents_are_paged_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/flappy").await;
    let t0 = 1_800_000_000_000;
    // Five incidents: three failures and two successes, five times.
    let mut results = Vec::new();
    for round in 0..5 {
        for i in 0..5 {
            let mut r = failing(url.id, t0 + (round * 5 + i) * 60_000);
            if i >= 3 {
                r.status_code = 200;
            }
            results.push(r);
        }
    }
    outcomes::write_batch(&app.db, &results.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut token_page = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_incidents(authed(
                pb::ListIncidentsRequest {
                    url_id: 0,
                    page_size: 2,
                    page_token: token_page,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.incidents.iter().map(|i| i.opened_at.unwrap().seconds));
        if page.next_page_token.is_empty() {
            break;
        }
        token_page = page.next_page_token;
    }
    let mut want: Vec<i64> = (0..5).map(|r| (t0 + r * 5 * 60_000) / 1000).collect();
    want.reverse();
    assert_eq!(seen, want, "newest first, each once");
    // A token is good only for the query that gave it.
    expect_code(
        app.client
            .clone()
            .list_incidents(authed(
                pb::ListIncidentsRequest {
                    url_id: 0,
                    page_size: 1001,
                    page_token: String::new(),
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        app.client
            .clone()
            .list_incidents(authed(
                pb::ListIncidentsRequest {
                    url_id: 0,
                    page_size: 1,
                    page_token: "garbage".into(),
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
}

crate::on_both_backends!(
    a_run_of_failures_opens_one_incident_and_successes_resolve_it,
    alternating_results_open_no_incident,
    redelivered_and_concurrent_batches_open_each_incident_once,
    incidents_are_paged_newest_first,
);
