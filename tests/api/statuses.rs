//! ListStatuses. The prober is not part of these tests: statuses are written
//! straight into the database, as the flush would write them.

use chrono::{DateTime, Duration, Utc};
use monitor::{
    api::convert::time_to_proto as to_proto, domain::truncate_to_micros, proto::monitor::v1 as pb,
    store::statuses,
};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait, Set};
use tonic::Code;

use crate::helpers::{Backend, authed, expect_code, expect_invalid, spawn_app};

/// Writes `n` statuses for `url_id`, one a minute, the newest due at
/// `newest`, each probed 3 ms after its due time; every third one a connect
/// failure. Returns their due times, newest first.
async fn seed(
    db: &DatabaseConnection,
    url_id: i64,
    n: i64,
    newest: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let newest = truncate_to_micros(newest);
    let times: Vec<_> = (0..n).map(|i| newest - Duration::minutes(i)).collect();
    let rows = times.iter().enumerate().map(|(i, &t)| {
        let failed = i % 3 == 2;
        statuses::ActiveModel {
            url_id: Set(url_id),
            due_at: Set(t),
            probed_after_us: Set(3_000),
            status_code: Set(if failed { 0 } else { 200 }),
            latency_micros: Set(12_345),
            error_kind: Set(failed.then_some(pb::ErrorKind::Connect as i16)),
            error_message: Set(failed.then(|| "connection refused".to_owned())),
            ..Default::default()
        }
    });
    // Oldest first, as a flush would; their days' partitions first.
    let rows: Vec<_> = rows.rev().collect();
    statuses::ensure_days(db, &statuses::days_spanning(times[times.len() - 1], newest))
        .await
        .unwrap();
    for chunk in rows.chunks(500) {
        statuses::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .unwrap();
    }
    times
}

fn query(url_id: i64) -> pb::ListStatusesRequest {
    pb::ListStatusesRequest {
        url_id,
        ..Default::default()
    }
}

async fn list_statuses_pages_through_everything_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let times = seed(&app.db, url.id, 250, Utc::now()).await;

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let resp = app
            .client
            .clone()
            .list_statuses(authed(
                pb::ListStatusesRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                    ..query(url.id)
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(resp.statuses);
        if resp.next_page_token.is_empty() {
            break;
        }
        page_token = resp.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    let got: Vec<_> = seen.iter().map(|s| s.due_at.unwrap()).collect();
    let want: Vec<_> = times.iter().map(|t| to_proto(*t)).collect();
    assert_eq!(got, want, "every status once, newest first");
    let probed: Vec<_> = seen.iter().map(|s| s.probed_at.unwrap()).collect();
    let want: Vec<_> = times
        .iter()
        .map(|t| to_proto(*t + Duration::milliseconds(3)))
        .collect();
    assert_eq!(probed, want, "probe times as written");
}

async fn list_statuses_defaults_to_100_and_carries_every_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    seed(&app.db, url.id, 150, Utc::now()).await;
    let resp = app
        .client
        .clone()
        .list_statuses(authed(query(url.id), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.statuses.len(), 100);
    assert!(!resp.next_page_token.is_empty());
    let ok = &resp.statuses[0];
    assert_eq!(ok.url_id, url.id);
    assert_eq!(ok.status_code, 200);
    assert_eq!(ok.error_kind, pb::ErrorKind::Unspecified as i32);
    assert!(ok.error_message.is_empty());
    assert_eq!(
        ok.latency.unwrap(),
        pbjson_types::Duration {
            seconds: 0,
            nanos: 12_345_000
        }
    );
    assert!(ok.due_at.is_some());
    let failed = &resp.statuses[2];
    assert_eq!(failed.status_code, 0);
    assert_eq!(failed.error_kind, pb::ErrorKind::Connect as i32);
    assert_eq!(failed.error_message, "connection refused");
}

async fn list_statuses_filters_by_time_range(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let times = seed(&app.db, url.id, 60, Utc::now()).await;
    // [times[39], times[9]): start inclusive, end exclusive -> 30 statuses.
    let resp = app
        .client
        .clone()
        .list_statuses(authed(
            pb::ListStatusesRequest {
                start_time: Some(to_proto(times[39])),
                end_time: Some(to_proto(times[9])),
                ..query(url.id)
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.statuses.len(), 30);
    assert_eq!(resp.statuses[0].due_at, Some(to_proto(times[10])));
    assert_eq!(resp.statuses[29].due_at, Some(to_proto(times[39])));
    assert!(resp.next_page_token.is_empty());
}

async fn another_users_statuses_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.user().await;
    let (_, mallory) = app.user().await;
    let url = app.add_url(&alice, "https://example.com/").await;
    seed(&app.db, url.id, 5, Utc::now()).await;
    let theirs = expect_code(
        app.client
            .clone()
            .list_statuses(authed(query(url.id), &mallory))
            .await,
        Code::NotFound,
    );
    let missing = expect_code(
        app.client
            .clone()
            .list_statuses(authed(query(url.id + 1000), &alice))
            .await,
        Code::NotFound,
    );
    assert_eq!(theirs.code(), missing.code());
}

async fn list_statuses_rejects_bad_paging_and_ranges(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let other = app.add_url(&token, "https://example.com/other").await;
    seed(&app.db, url.id, 5, Utc::now()).await;
    seed(&app.db, other.id, 5, Utc::now()).await;
    let mut c = app.client.clone();

    expect_invalid(c.list_statuses(authed(query(0), &token)).await, "url_id");
    for page_size in [-1, 1001] {
        let r = c
            .list_statuses(authed(
                pb::ListStatusesRequest {
                    page_size,
                    ..query(url.id)
                },
                &token,
            ))
            .await;
        expect_invalid(r, "page_size");
    }
    for page_token in ["garbage!", "bm90IGEgY3Vyc29y"] {
        let r = c
            .list_statuses(authed(
                pb::ListStatusesRequest {
                    page_token: page_token.into(),
                    ..query(url.id)
                },
                &token,
            ))
            .await;
        expect_invalid(r, "page_token");
    }
    // A token from one URL does not work for another.
    let first = c
        .list_statuses(authed(
            pb::ListStatusesRequest {
                page_size: 2,
                ..query(other.id)
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let r = c
        .list_statuses(authed(
            pb::ListStatusesRequest {
                page_token: first.next_page_token,
                ..query(url.id)
            },
            &token,
        ))
        .await;
    expect_invalid(r, "page_token");

    let now = to_proto(Utc::now());
    let r = c
        .list_statuses(authed(
            pb::ListStatusesRequest {
                start_time: Some(now),
                end_time: Some(now),
                ..query(url.id)
            },
            &token,
        ))
        .await;
    expect_invalid(r, "start_time");
    let r = c
        .list_statuses(authed(
            pb::ListStatusesRequest {
                end_time: Some(monitor::proto::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..query(url.id)
            },
            &token,
        ))
        .await;
    expect_invalid(r, "end_time");
}

async fn deleting_a_url_deletes_its_statuses(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let kept = app.add_url(&token, "https://example.com/kept").await;
    seed(&app.db, url.id, 10, Utc::now()).await;
    seed(&app.db, kept.id, 4, Utc::now()).await;
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: url.id }, &token))
        .await
        .unwrap();
    assert_eq!(statuses::Entity::find().count(&app.db).await.unwrap(), 4);
}

crate::on_both_backends!(
    list_statuses_pages_through_everything_newest_first,
    list_statuses_defaults_to_100_and_carries_every_field,
    list_statuses_filters_by_time_range,
    another_users_statuses_are_not_found,
    list_statuses_rejects_bad_paging_and_ranges,
    deleting_a_url_deletes_its_statuses,
);
