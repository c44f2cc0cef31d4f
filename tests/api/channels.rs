//! Notification channels over gRPC and JSON: create (the webhook's secret
//! returned once), list (never a secret), delete; isolation between users;
//! bad input refused by name with nothing written; the SSRF guard's literal
//! check; the per-user quota.

use base64::{Engine, engine::general_purpose::STANDARD};
use monitor::proto::monitor::v1::{self as pb, channel::Target};
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, authed, expect_code, expect_invalid, spawn_app, spawn_app_with,
};

pub fn webhook(name: &str, url: &str) -> pb::Channel {
    pb::Channel {
        name: name.into(),
        target: Some(Target::Webhook(pb::WebhookTarget {
            url: url.into(),
            secret: String::new(),
        })),
        ..pb::Channel::default()
    }
}

pub async fn create_channel(
    app: &TestApp,
    token: &str,
    channel: pb::Channel,
) -> Result<tonic::Response<pb::Channel>, tonic::Status> {
    app.client
        .clone()
        .create_channel(authed(
            pb::CreateChannelRequest {
                channel: Some(channel),
            },
            token,
        ))
        .await
}

pub async fn list_channels(app: &TestApp, token: &str) -> Vec<pb::Channel> {
    app.client
        .clone()
        .list_channels(authed(pb::ListChannelsRequest {}, token))
        .await
        .expect("list channels")
        .into_inner()
        .channels
}

fn secret_of(channel: &pb::Channel) -> &str {
    match &channel.target {
        Some(Target::Webhook(w)) => &w.secret,
        other => panic!("not a webhook: {other:?}"),
    }
}

async fn a_webhook_channel_is_created_listed_without_its_secret_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut asked = webhook(" ops ", "https://hooks.example.com/in");
    asked.url_ids = vec![url.id, url.id];
    asked.notify_degraded = true;
    let created = create_channel(&app, &token, asked)
        .await
        .expect("create")
        .into_inner();
    assert!(created.id > 0);
    assert_eq!(created.name, "ops");
    assert_eq!(created.url_ids, vec![url.id], "repeats dropped");
    assert!(created.notify_degraded);
    assert!(created.created_at.is_some());
    let secret = secret_of(&created);
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 after the prefix");
    assert!(key.len() >= 24, "{} bytes", key.len());

    let listed = list_channels(&app, &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(secret_of(&listed[0]), "", "a secret is never listed");
    let mut without_secret = created.clone();
    without_secret.target = listed[0].target.clone();
    assert_eq!(listed[0], without_secret);

    app.client
        .clone()
        .delete_channel(authed(pb::DeleteChannelRequest { id: created.id }, &token))
        .await
        .expect("delete");
    assert!(list_channels(&app, &token).await.is_empty());
    expect_code(
        app.client
            .clone()
            .delete_channel(authed(pb::DeleteChannelRequest { id: created.id }, &token))
            .await,
        Code::NotFound,
    );
}

async fn another_users_channels_and_urls_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.user().await;
    let (_, bob) = app.user().await;
    let alices_url = app.add_url(&alice, "https://example.com/alice").await;
    let channel = create_channel(&app, &alice, webhook("a", "https://hooks.example.com/a"))
        .await
        .unwrap()
        .into_inner();
    let status = expect_code(
        app.client
            .clone()
            .delete_channel(authed(pb::DeleteChannelRequest { id: channel.id }, &bob))
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("no channel"), "{status:?}");
    assert!(list_channels(&app, &bob).await.is_empty());
    assert_eq!(list_channels(&app, &alice).await.len(), 1);

    let mut bobs = webhook("b", "https://hooks.example.com/b");
    bobs.url_ids = vec![alices_url.id];
    let status = expect_code(create_channel(&app, &bob, bobs).await, Code::NotFound);
    assert!(
        status.message().contains(&alices_url.id.to_string()),
        "{status:?}"
    );
    assert!(list_channels(&app, &bob).await.is_empty(), "nothing added");
}

async fn bad_channels_are_refused_by_field_and_nothing_is_added(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let mut with_secret = webhook("x", "https://hooks.example.com/");
    with_secret.target = Some(Target::Webhook(pb::WebhookTarget {
        url: "https://hooks.example.com/".into(),
        secret: "whsec_mine".into(),
    }));
    let mut bad_ids = webhook("x", "https://hooks.example.com/");
    bad_ids.url_ids = vec![-1];
    let mut no_target = webhook("x", "https://hooks.example.com/");
    no_target.target = None;
    let mut slack = webhook("x", "https://hooks.example.com/");
    slack.target = Some(Target::Slack(pb::SlackTarget {
        webhook_url: "hooks.slack.com/services/x".into(),
    }));
    for (channel, field) in [
        (webhook("  ", "https://hooks.example.com/"), "channel.name"),
        (
            webhook("x", "ftp://hooks.example.com/"),
            "channel.webhook.url",
        ),
        (webhook("x", ""), "channel.webhook.url"),
        (with_secret, "channel.webhook.secret"),
        (bad_ids, "channel.url_ids"),
        (no_target, "channel.target"),
        (slack, "channel.slack.webhook_url"),
    ] {
        expect_invalid(create_channel(&app, &token, channel).await, field);
    }
    expect_invalid(
        app.client
            .clone()
            .create_channel(authed(pb::CreateChannelRequest { channel: None }, &token))
            .await,
        "channel",
    );
    expect_invalid(
        app.client
            .clone()
            .delete_channel(authed(pb::DeleteChannelRequest { id: 0 }, &token))
            .await,
        "id",
    );
    assert!(list_channels(&app, &token).await.is_empty());
}

async fn a_private_address_is_refused_unless_private_targets_are_allowed(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.prober.probe.allow_private_targets = false).await;
    let (_, token) = app.user().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
    ] {
        let status = expect_invalid(
            create_channel(&app, &token, webhook("x", url)).await,
            "channel.webhook.url",
        );
        assert!(status.message().contains("private"), "{url}: {status:?}");
    }
    assert!(list_channels(&app, &token).await.is_empty());
}

async fn channels_past_the_quota_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.channels.max_channels_per_user = 2).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    for n in 0..2 {
        create_channel(
            &app,
            &token,
            webhook(&format!("c{n}"), "https://h.example.com/"),
        )
        .await
        .expect("within the quota");
    }
    expect_code(
        create_channel(&app, &token, webhook("c2", "https://h.example.com/")).await,
        Code::ResourceExhausted,
    );
    assert_eq!(list_channels(&app, &token).await.len(), 2);
    create_channel(&app, &other, webhook("c0", "https://h.example.com/"))
        .await
        .expect("the quota is per user");
}

async fn a_deleted_url_leaves_its_channels_without_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let a = app.add_url(&token, "https://example.com/a").await;
    let b = app.add_url(&token, "https://example.com/b").await;
    let mut asked = webhook("some", "https://hooks.example.com/");
    asked.url_ids = vec![b.id, a.id];
    let created = create_channel(&app, &token, asked)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.url_ids, vec![a.id, b.id]);
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: a.id }, &token))
        .await
        .unwrap();
    assert_eq!(list_channels(&app, &token).await[0].url_ids, vec![b.id]);
}

async fn channels_over_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let auth = format!("Bearer {token}");
    let (status, created) = app
        .post_json(
            "/v1/channels",
            json!({"name": "hooks", "webhook": {"url": "https://hooks.example.com/x"}, "notifyDegraded": true}),
            Some(&auth),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(
        created["webhook"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(created["notifyDegraded"], true);
    let id = created["id"]
        .as_str()
        .expect("int64 as a string")
        .to_owned();

    let (status, listed) = app.get_json("/v1/channels", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["channels"][0]["id"], id.as_str());
    assert!(
        listed["channels"][0]["webhook"].get("secret").is_none(),
        "{listed}"
    );

    let (status, body) = app
        .post_json(
            "/v1/channels",
            json!({"name": "x", "webhook": {"url": "gopher://x"}}),
            Some(&auth),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"],
        "channel.webhook.url"
    );
    let (status, body) = app
        .post_json("/v1/channels?name=x", json!({"name": "x"}), Some(&auth))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Deleted, then gone.
    for expected in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let path = format!("/v1/channels/{id}");
        let (status, body) = app
            .json(reqwest::Method::DELETE, &path, None, Some(&auth))
            .await;
        assert_eq!(status, expected, "{body}");
    }
}

crate::on_both_backends!(
    a_webhook_channel_is_created_listed_without_its_secret_and_deleted,
    another_users_channels_and_urls_are_not_found,
    bad_channels_are_refused_by_field_and_nothing_is_added,
    a_private_address_is_refused_unless_private_targets_are_allowed,
    channels_past_the_quota_are_refused,
    a_deleted_url_leaves_its_channels_without_it,
    channels_over_json,
);
