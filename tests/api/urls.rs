//! AddUrl, ListUrls, DeleteUrl.

use monitor::{proto::monitor::v1 as pb, store::urls};
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, authed, expect_code, expect_invalid, spawn_app, spawn_app_with,
};

fn add(url: &str, period: Option<(i64, i32)>) -> pb::AddUrlRequest {
    pb::AddUrlRequest {
        url: url.into(),
        period: period.map(|(seconds, nanos)| pbjson_types::Duration { seconds, nanos }),
        ..Default::default()
    }
}

async fn add_url_defaults_to_one_minute_and_normalizes_the_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app
        .client
        .clone()
        .add_url(authed(add("HTTPS://Example.COM:443/health", None), &token))
        .await
        .unwrap()
        .into_inner()
        .url
        .unwrap();
    assert!(url.id > 0);
    assert_eq!(url.url, "https://example.com/health");
    assert_eq!(url.period.unwrap().seconds, 60);
    assert!(url.created_at.is_some());
}

async fn add_url_keeps_an_explicit_period_within_bounds(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    for (i, secs) in [10, 120, 6000].into_iter().enumerate() {
        let url = app
            .client
            .clone()
            .add_url(authed(
                add(&format!("https://example.com/{i}"), Some((secs, 0))),
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .url
            .unwrap();
        assert_eq!(url.period.unwrap().seconds, secs);
    }
}

async fn add_url_rejects_a_period_out_of_range_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    for period in [
        (9, 0),
        (6001, 0),
        (-60, 0),
        (0, 0),
        (60, 500_000_000),
        (i64::MAX, 0),
    ] {
        let r = app
            .client
            .clone()
            .add_url(authed(add("https://example.com/", Some(period)), &token))
            .await;
        expect_invalid(r, "period");
    }
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 0);
}

async fn add_url_honours_configured_period_bounds(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.urls.min_period = std::time::Duration::from_secs(30);
        s.urls.max_period = std::time::Duration::from_secs(300);
    })
    .await;
    let (_, token) = app.user().await;
    let status = expect_invalid(
        app.client
            .clone()
            .add_url(authed(add("https://example.com/", Some((20, 0))), &token))
            .await,
        "period",
    );
    assert!(
        status.message().contains("30s") && status.message().contains("5m"),
        "{}",
        status.message()
    );
    expect_invalid(
        app.client
            .clone()
            .add_url(authed(add("https://example.com/", Some((301, 0))), &token))
            .await,
        "period",
    );
}

async fn add_url_rejects_urls_it_cannot_probe(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let too_long = format!("https://example.com/{}", "a".repeat(2048));
    let long_label = format!("https://{}.example.com/", "a".repeat(64));
    let long_name = format!("https://{}/", vec!["a".repeat(60); 5].join("."));
    for bad in [
        long_label.as_str(),
        long_name.as_str(),
        "https://exam\tple.com/",
        "https://example.com/he\nalth",
        "",
        "example.com",
        "/relative/path",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "https://user:secret@example.com/",
        "https://user@example.com/",
        "http://exa mple.com/",
        too_long.as_str(),
    ] {
        let status = expect_invalid(
            app.client
                .clone()
                .add_url(authed(add(bad, None), &token))
                .await,
            "url",
        );
        assert!(
            !status.message().contains("secret"),
            "credentials echoed: {}",
            status.message()
        );
    }
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 0);
}

async fn add_url_twice_is_already_exists_even_spelled_differently(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    app.add_url(&token, "https://example.com/a").await;
    for again in ["https://example.com/a", "HTTPS://EXAMPLE.com:443/a"] {
        expect_code(
            app.client
                .clone()
                .add_url(authed(add(again, None), &token))
                .await,
            Code::AlreadyExists,
        );
    }
    // Another user may monitor the same URL.
    let (_, other) = app.user().await;
    app.add_url(&other, "https://example.com/a").await;
}

async fn add_url_past_the_quota_is_resource_exhausted(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_urls_per_user = 2).await;
    let (_, token) = app.user().await;
    app.add_url(&token, "https://example.com/1").await;
    app.add_url(&token, "https://example.com/2").await;
    let status = expect_code(
        app.client
            .clone()
            .add_url(authed(add("https://example.com/3", None), &token))
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains('2'), "{}", status.message());
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 2);
    // The quota is per user.
    let (_, other) = app.user().await;
    app.add_url(&other, "https://example.com/3").await;
}

async fn the_quota_counts_only_urls_kept(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_urls_per_user = 2).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let add_as = |token: &str, url: &str| {
        let mut client = app.client.clone();
        let request = authed(add(url, None), token);
        async move { client.add_url(request).await }
    };
    let a = app.add_url(&token, "https://example.com/a").await;
    // A duplicate is refused and takes no slot...
    expect_code(
        add_as(&token, "https://example.com/a").await,
        Code::AlreadyExists,
    );
    app.add_url(&token, "https://example.com/b").await;
    // ...and is ALREADY_EXISTS, not RESOURCE_EXHAUSTED, at the quota too.
    expect_code(
        add_as(&token, "https://example.com/b").await,
        Code::AlreadyExists,
    );
    expect_code(
        add_as(&token, "https://example.com/c").await,
        Code::ResourceExhausted,
    );
    // Another user cannot free a slot by deleting someone else's URL.
    expect_code(
        app.client
            .clone()
            .delete_url(authed(pb::DeleteUrlRequest { id: a.id }, &other))
            .await,
        Code::NotFound,
    );
    expect_code(
        add_as(&token, "https://example.com/c").await,
        Code::ResourceExhausted,
    );
    // Deleting one frees one.
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: a.id }, &token))
        .await
        .unwrap();
    app.add_url(&token, "https://example.com/c").await;
    expect_code(
        add_as(&token, "https://example.com/d").await,
        Code::ResourceExhausted,
    );
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 2);
}

/// Sends the adds all at once, each on its own connection; returns how many
/// succeeded (the others must be RESOURCE_EXHAUSTED).
async fn add_concurrently(app: &TestApp, token: &str, adds: Vec<pb::AddUrlRequest>) -> usize {
    let mut tasks = Vec::new();
    for request in adds {
        let mut client = app.new_client().await;
        let request = authed(request, token);
        tasks.push(tokio::spawn(async move { client.add_url(request).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"),
        }
    }
    ok
}

async fn add_url_starts_the_urls_schedule_history(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/history").await;
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!(
                "SELECT period_seconds, paused FROM url_periods WHERE url_id = {}",
                url.id
            ),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].try_get::<i32>("", "period_seconds").unwrap(), 60);
    assert!(!rows[0].try_get::<bool>("", "paused").unwrap());
}

async fn concurrent_adds_never_exceed_the_quota(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_urls_per_user = 3).await;
    let (_, token) = app.user().await;
    let adds = (0..10)
        .map(|i| add(&format!("https://example.com/{i}"), None))
        .collect();
    assert_eq!(add_concurrently(&app, &token, adds).await, 3);
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 3);
}

/// Issue 13: one account added 1,000 URLs of one host at 10 s and made the
/// service send that host 100 requests a second.
async fn one_account_cannot_send_one_host_more_than_the_host_rate(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_host_rate = 1.0).await;
    let (_, token) = app.user().await;
    let add_as = |token: &str, url: &str, secs: i64| {
        let mut client = app.client.clone();
        let request = authed(add(url, Some((secs, 0))), token);
        async move { client.add_url(request).await }
    };
    // The attack: as many 10 s URLs of one host as the quota allows.
    let mut added = Vec::new();
    let mut refused = None;
    for i in 0..50 {
        match add_as(&token, &format!("https://victim.example/{i}"), 10).await {
            Ok(url) => added.push(url.into_inner().url.unwrap().id),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused.get_or_insert(status);
            }
        }
    }
    assert_eq!(added.len(), 10, "1 probe a second: ten URLs every 10 s");
    let message = refused.unwrap().message().to_owned();
    for part in ["victim.example", "1 per second", "longer period"] {
        assert!(message.contains(part), "{message}");
    }
    // Another spelling of the host is the same host.
    expect_code(
        add_as(&token, "https://VICTIM.example.:443/x", 100).await,
        Code::ResourceExhausted,
    );
    // Other hosts, and other accounts, have their own budget.
    app.add_url(&token, "https://other.example/").await;
    let (_, other) = app.user().await;
    add_as(&other, "https://victim.example/0", 10)
        .await
        .unwrap();
    // Deleting a URL gives its share back: one 10 s URL, or two at 20 s.
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: added[0] }, &token))
        .await
        .unwrap();
    add_as(&token, "https://victim.example/a", 20)
        .await
        .unwrap();
    add_as(&token, "https://victim.example/b", 20)
        .await
        .unwrap();
    expect_code(
        add_as(&token, "https://victim.example/c", 100).await,
        Code::ResourceExhausted,
    );
    // Over JSON: 429 with the same message.
    let (status, body) = app
        .json(
            reqwest::Method::POST,
            "/v1/urls",
            Some(serde_json::json!({"url": "https://victim.example/d", "period": "60s"})),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("victim.example"),
        "{body}"
    );
    // What the service now sends the host for this account: at most 1/s.
    let rate: f64 = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .urls
        .iter()
        .filter(|u| u.url.contains("victim.example"))
        .map(|u| 1.0 / f64::from(i32::try_from(u.period.unwrap().seconds).unwrap()))
        .sum();
    assert!(rate <= 1.0 + 1e-9, "{rate} probes a second");
}

async fn concurrent_adds_never_exceed_the_host_rate(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.urls.max_host_rate = 0.5).await;
    let (_, token) = app.user().await;
    let adds = (0..20)
        .map(|i| add(&format!("https://example.com/{i}"), Some((10, 0))))
        .collect();
    assert_eq!(
        add_concurrently(&app, &token, adds).await,
        5,
        "half a probe a second: five URLs every 10 s"
    );
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 5);
}

async fn list_urls_returns_only_the_callers_urls_oldest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.user().await;
    let (_, bob) = app.user().await;
    let a1 = app.add_url(&alice, "https://a.example.com/1").await;
    let a2 = app.add_url(&alice, "https://a.example.com/2").await;
    app.add_url(&bob, "https://b.example.com/").await;
    let list = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &alice))
        .await
        .unwrap()
        .into_inner()
        .urls;
    assert_eq!(list, vec![a1, a2]);
    let (_, carol) = app.user().await;
    let empty = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &carol))
        .await
        .unwrap()
        .into_inner()
        .urls;
    assert!(empty.is_empty());
}

async fn delete_url_removes_it_and_a_second_delete_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: url.id }, &token))
        .await
        .unwrap();
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 0);
    expect_code(
        app.client
            .clone()
            .delete_url(authed(pb::DeleteUrlRequest { id: url.id }, &token))
            .await,
        Code::NotFound,
    );
    // It can be added again afterwards.
    app.add_url(&token, "https://example.com/").await;
}

async fn another_users_url_is_not_found_and_survives_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.user().await;
    let (_, mallory) = app.user().await;
    let url = app.add_url(&alice, "https://example.com/").await;
    let status = expect_code(
        app.client
            .clone()
            .delete_url(authed(pb::DeleteUrlRequest { id: url.id }, &mallory))
            .await,
        Code::NotFound,
    );
    // Same answer as for an id that does not exist at all.
    let missing = expect_code(
        app.client
            .clone()
            .delete_url(authed(pb::DeleteUrlRequest { id: url.id + 1000 }, &mallory))
            .await,
        Code::NotFound,
    );
    assert_eq!(
        status.message().replace(&url.id.to_string(), "N"),
        missing.message().replace(&(url.id + 1000).to_string(), "N")
    );
    assert_eq!(urls::Entity::find().count(&app.db).await.unwrap(), 1);
}

async fn delete_url_without_a_positive_id_is_invalid(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    for id in [0, -5] {
        expect_invalid(
            app.client
                .clone()
                .delete_url(authed(pb::DeleteUrlRequest { id }, &token))
                .await,
            "id",
        );
    }
}

crate::on_both_backends!(
    add_url_defaults_to_one_minute_and_normalizes_the_url,
    add_url_keeps_an_explicit_period_within_bounds,
    add_url_rejects_a_period_out_of_range_naming_the_field,
    add_url_honours_configured_period_bounds,
    add_url_rejects_urls_it_cannot_probe,
    add_url_twice_is_already_exists_even_spelled_differently,
    add_url_past_the_quota_is_resource_exhausted,
    the_quota_counts_only_urls_kept,
    concurrent_adds_never_exceed_the_quota,
    add_url_starts_the_urls_schedule_history,
    one_account_cannot_send_one_host_more_than_the_host_rate,
    concurrent_adds_never_exceed_the_host_rate,
    list_urls_returns_only_the_callers_urls_oldest_first,
    delete_url_removes_it_and_a_second_delete_is_not_found,
    another_users_url_is_not_found_and_survives_delete,
    delete_url_without_a_positive_id_is_invalid,
);
