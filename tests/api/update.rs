//! UpdateUrl over gRPC and JSON: the mask's rules, validation, isolation,
//! pausing (a real target counts the probes), the per-host rate and the
//! schedule history. The grid across changes is in `steps.rs`.

use std::time::Duration;

use monitor::proto::monitor::v1::{self as pb, UrlState};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use tonic::Code;

use crate::{
    helpers::{
        Backend, TestApp, authed, expect_code, expect_invalid, prober_settings, spawn_app,
        spawn_app_with,
    },
    target::Target,
};

/// A `Url.period` of `seconds`.
#[allow(clippy::unnecessary_wraps)] // the field's type
fn every(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

/// UpdateUrl of `url` (its id and values) with the mask `paths`; no paths: no mask.
pub async fn update(
    app: &TestApp,
    token: &str,
    url: pb::Url,
    paths: &[&str],
) -> Result<tonic::Response<pb::Url>, tonic::Status> {
    let update_mask = (!paths.is_empty()).then(|| pbjson_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    });
    app.client
        .clone()
        .update_url(authed(
            pb::UpdateUrlRequest {
                url: Some(url),
                update_mask,
            },
            token,
        ))
        .await
}

async fn update_url_changes_what_is_asked_and_returns_the_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let added = app.add_url(&token, "https://example.com/shop").await;
    // No mask: every changeable field set; output-only ones are ignored.
    let url = update(
        &app,
        &token,
        pb::Url {
            id: added.id,
            name: "Shop".into(),
            failure_threshold: 5,
            state: UrlState::Down as i32,
            url: "https://elsewhere.example/".into(),
            ..Default::default()
        },
        &[],
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        (
            url.name.as_str(),
            url.failure_threshold,
            url.success_threshold
        ),
        ("Shop", 5, 2)
    );
    assert_eq!(
        (url.url.as_str(), url.period),
        (added.url.as_str(), every(60))
    );
    assert_eq!(url.state(), UrlState::Pending);
    assert_eq!(app.get_url(&token, added.id).await, url);
    // A mask sets what it names, in either spelling, and nothing else.
    let changed = |name: &str| pb::Url {
        id: added.id,
        name: name.into(),
        period: every(30),
        success_threshold: 4,
        ..Default::default()
    };
    let url = update(
        &app,
        &token,
        changed("ignored"),
        &["period", "successThreshold"],
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        (
            url.name.as_str(),
            url.period,
            url.success_threshold,
            url.failure_threshold
        ),
        ("Shop", every(30), 4, 5)
    );
    // An empty name in the mask: the name is the URL again.
    let url = update(&app, &token, changed(""), &["name"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(url.name, url.url);
}

async fn update_url_refuses_bad_paths_and_values_naming_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let added = app.add_url(&token, "https://example.com/").await;
    let id = added.id;
    let url = |f: fn(&mut pb::Url)| {
        let mut u = pb::Url {
            id,
            ..Default::default()
        };
        f(&mut u);
        u
    };
    for (path, says) in [
        ("state", "is output only"),
        ("state_since", "is output only"),
        ("createdAt", "is output only"),
        ("url", "cannot be changed"),
        ("id", "cannot be changed"),
        ("tlsNotAfter", "is output only"),
        ("colour", "is not a field of Url"),
    ] {
        let status = expect_invalid(
            update(&app, &token, url(|_| {}), &["name", path]).await,
            "update_mask",
        );
        assert!(
            status.message().contains(&format!("\"{path}\" {says}")),
            "{status:?}"
        );
    }
    for (value, paths, field) in [
        (url(|u| u.name = "x".repeat(201)), vec![], "url.name"),
        (url(|u| u.name = "a\tb".into()), vec!["name"], "url.name"),
        (url(|u| u.period = every(5)), vec![], "url.period"),
        (
            url(|u| {
                u.period = Some(pbjson_types::Duration {
                    seconds: 30,
                    nanos: 5,
                });
            }),
            vec![],
            "url.period",
        ),
        (
            url(|_| {}),
            vec!["failure_threshold"],
            "url.failure_threshold",
        ),
        (
            url(|u| u.failure_threshold = 101),
            vec![],
            "url.failure_threshold",
        ),
        (
            url(|u| u.success_threshold = -1),
            vec![],
            "url.success_threshold",
        ),
        (pb::Url::default(), vec!["name"], "url.id"),
    ] {
        expect_invalid(update(&app, &token, value, &paths).await, field);
    }
    let no_url = app
        .client
        .clone()
        .update_url(authed(pb::UpdateUrlRequest::default(), &token))
        .await;
    expect_invalid(no_url, "url");
    assert_eq!(app.get_url(&token, id).await, added, "nothing changed");
}

async fn update_url_of_another_users_url_is_not_found_as_get_url_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, owner) = app.user().await;
    let (_, other) = app.user().await;
    let url = app.add_url(&owner, "https://example.com/mine").await;
    let change = pb::Url {
        id: url.id,
        name: "theirs".into(),
        paused: true,
        ..Default::default()
    };
    let refused = expect_code(
        update(&app, &other, change.clone(), &[]).await,
        Code::NotFound,
    );
    let got = app
        .client
        .clone()
        .get_url(authed(pb::GetUrlRequest { id: url.id }, &other))
        .await;
    assert_eq!(
        refused.message(),
        expect_code(got, Code::NotFound).message()
    );
    let missing = pb::Url {
        id: url.id + 1000,
        ..change
    };
    expect_code(update(&app, &owner, missing, &[]).await, Code::NotFound);
    assert_eq!(app.get_url(&owner, url.id).await, url, "unchanged");
}

async fn a_paused_url_is_not_probed_and_resumed_it_is_again(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let added = app
        .add_url_every(&token, &target.url("/ok?paused"), 1)
        .await;
    app.wait_for_statuses(&token, added.id, 2, Duration::from_secs(10))
        .await;
    let pause = |paused: bool| pb::Url {
        id: added.id,
        paused,
        ..Default::default()
    };
    let paused = update(&app, &token, pause(true), &["paused"])
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    assert_eq!(paused.state(), UrlState::Paused);
    assert!(paused.state_since.is_some());
    // A probe claimed just before the pause (within the look-ahead) may still go out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = target.hits("/ok?paused").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(target.hits("/ok?paused").len(), hits, "probed while paused");
    let now = app.get_url(&token, added.id).await;
    assert_eq!(
        now.state(),
        UrlState::Paused,
        "results in flight move nothing"
    );
    assert_eq!(now.state_since, paused.state_since);

    let resumed = update(&app, &token, pause(false), &["paused"])
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.paused);
    assert_eq!(resumed.state(), UrlState::Pending);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let up = app.get_url(&token, added.id).await.state() == UrlState::Up;
        if up && target.hits("/ok?paused").len() >= hits + 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not probed again after the resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn host_rate(app: &TestApp, host: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT rate_micros FROM host_rates WHERE host = '{host}'"),
        ))
        .await
        .unwrap();
    row.map_or(0, |r| r.try_get("", "rate_micros").unwrap())
}

async fn a_shorter_period_or_a_resume_past_the_host_rate_is_resource_exhausted(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_host_rate = 0.1).await;
    let (_, token) = app.user().await;
    let a = app
        .add_url_every(&token, "https://victim.example/a", 20)
        .await;
    let b = app
        .add_url_every(&token, "https://victim.example/b", 20)
        .await;
    let period = |id: i64, seconds: i64| pb::Url {
        id,
        period: every(seconds),
        ..Default::default()
    };
    let paused = |id: i64, paused: bool| pb::Url {
        id,
        paused,
        ..Default::default()
    };
    let refused = expect_code(
        update(&app, &token, period(a.id, 10), &[]).await,
        Code::ResourceExhausted,
    );
    for part in ["victim.example", "0.15", "longer period"] {
        assert!(refused.message().contains(part), "{refused:?}");
    }
    assert_eq!(
        app.get_url(&token, a.id).await.period,
        every(20),
        "unchanged"
    );
    // A paused URL sends nothing: its share is free while it is paused.
    update(&app, &token, paused(b.id, true), &["paused"])
        .await
        .unwrap();
    assert_eq!(host_rate(&app, "victim.example").await, 50_000);
    update(&app, &token, period(a.id, 10), &[]).await.unwrap();
    let refused = expect_code(
        update(&app, &token, paused(b.id, false), &["paused"]).await,
        Code::ResourceExhausted,
    );
    assert!(refused.message().contains("victim.example"), "{refused:?}");
    assert_eq!(app.get_url(&token, b.id).await.state(), UrlState::Paused);
    update(&app, &token, period(a.id, 40), &[]).await.unwrap();
    update(&app, &token, paused(b.id, false), &["paused"])
        .await
        .unwrap();
    assert_eq!(host_rate(&app, "victim.example").await, 75_000);
    // Deleting a paused URL gives back nothing more.
    update(&app, &token, paused(a.id, true), &["paused"])
        .await
        .unwrap();
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: a.id }, &token))
        .await
        .unwrap();
    assert_eq!(host_rate(&app, "victim.example").await, 50_000);
}

async fn update_url_writes_the_schedule_history_and_keeps_the_url_on_its_grid(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/history").await;
    let change = |period: i64, paused: bool, name: &str| pb::Url {
        id: url.id,
        period: every(period),
        paused,
        name: name.into(),
        ..Default::default()
    };
    let all = ["period", "paused", "name"];
    for (period, paused, name) in [
        (30, false, ""),
        (30, true, ""),
        (30, true, "renamed"),
        (45, true, "renamed"),
        (45, false, "renamed"),
    ] {
        update(&app, &token, change(period, paused, name), &all)
            .await
            .unwrap();
        // Apart by a millisecond at least, as real changes are.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backend = app.db.get_database_backend();
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT period_seconds, paused FROM url_periods WHERE url_id = {} ORDER BY since_ms",
                url.id
            ),
        ))
        .await
        .unwrap();
    let history: Vec<(i32, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "period_seconds").unwrap(),
                r.try_get("", "paused").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (60, false),
            (30, false),
            (30, true),
            (45, true),
            (45, false)
        ],
        "one row per change of period or pause, none for a name"
    );
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            backend,
            format!(
                "SELECT phase_ms, next_due_ms FROM url_schedules WHERE url_id = {}",
                url.id
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let phase: i64 = row.try_get("", "phase_ms").unwrap();
    let next: i64 = row.try_get("", "next_due_ms").unwrap();
    assert!((0..45_000).contains(&phase), "{phase}");
    assert_eq!(
        (next - phase) % 45_000,
        0,
        "the next due time is on the grid"
    );
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        next >= now - 1_000 && next <= now + 45_000,
        "{next} vs {now}"
    );
}

async fn the_json_patch_route_takes_a_url_body_and_an_optional_update_mask(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let bearer = format!("Bearer {token}");
    let url = app.add_url(&token, "https://example.com/json").await;
    let url_path = format!("/v1/urls/{}", url.id);
    let patch = |query: &str, body: serde_json::Value, auth: Option<&str>| {
        let path = format!("{url_path}{query}");
        let app = &app;
        let auth = auth.map(str::to_owned);
        async move {
            app.json(reqwest::Method::PATCH, &path, Some(body), auth.as_deref())
                .await
        }
    };
    let (status, body) = patch(
        "?updateMask=name,failureThreshold",
        json!({"name": "Shop", "failureThreshold": 4, "period": "10s"}),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["name"], &body["failureThreshold"], &body["period"]),
        (&json!("Shop"), &json!(4), &json!("60s")),
        "only what the mask names: {body}"
    );
    assert_eq!(body["id"], json!(url.id.to_string()));
    // No mask: what the body sets; the id is the path's.
    let (status, body) = patch(
        "",
        json!({"id": "999", "period": "30s", "paused": true}),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["period"], &body["paused"], &body["state"]),
        (&json!("30s"), &json!(true), &json!("URL_STATE_PAUSED"))
    );
    let (status, body) = patch("?update_mask=paused", json!({}), Some(&bearer)).await;
    assert_eq!(
        (status.as_u16(), &body["paused"]),
        (200, &json!(null)),
        "{body}"
    );
    // Errors in the gateway's shape.
    let (status, body) = patch("?updateMask=state", json!({}), Some(&bearer)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 3);
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"],
        "update_mask"
    );
    let (status, body) = patch("?fields=name", json!({}), Some(&bearer)).await;
    assert_eq!((status.as_u16(), &body["code"]), (400, &json!(3)), "{body}");
    let (status, body) = patch("", json!({"failureThreshold": 0.5}), Some(&bearer)).await;
    assert_eq!((status.as_u16(), &body["code"]), (400, &json!(3)), "{body}");
    let (status, body) = patch("", json!({"name": "x"}), None).await;
    assert_eq!(
        (status.as_u16(), &body["code"]),
        (401, &json!(16)),
        "{body}"
    );
    let (_, other) = app.user().await;
    let (status, body) = patch("", json!({"name": "x"}), Some(&format!("Bearer {other}"))).await;
    assert_eq!((status.as_u16(), &body["code"]), (404, &json!(5)), "{body}");
    let (status, body) = app
        .json(
            reqwest::Method::PATCH,
            "/v1/urls/nope",
            Some(json!({})),
            Some(&bearer),
        )
        .await;
    assert_eq!((status.as_u16(), &body["code"]), (400, &json!(3)), "{body}");
}

crate::on_both_backends!(
    update_url_changes_what_is_asked_and_returns_the_url,
    update_url_refuses_bad_paths_and_values_naming_them,
    update_url_of_another_users_url_is_not_found_as_get_url_says,
    a_paused_url_is_not_probed_and_resumed_it_is_again,
    a_shorter_period_or_a_resume_past_the_host_rate_is_resource_exhausted,
    update_url_writes_the_schedule_history_and_keeps_the_url_on_its_grid,
    the_json_patch_route_takes_a_url_body_and_an_optional_update_mask,
);
