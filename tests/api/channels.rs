//! Notification channels over gRPC and JSON: create (the webhook's secret
//! returned once), list (never a secret), delete; isolation between users;
//! bad input refused by name with nothing written; the SSRF guard's literal
//! check; the per-user quota.

use base64::{Engine, engine::general_purpose::STANDARD};
use monitor::proto::monitor::v1::{self as pb, channel::Target};
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

use std::time::{Duration, Instant};

use crate::{
    helpers::{Backend, TestApp, authed, expect_code, expect_invalid, spawn_app, spawn_app_with},
    notifications::{Receiver, verify},
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
    // A change to a private address too, and the channel stays as it was.
    let public = create_channel(&app, &token, webhook("x", "https://hooks.example.com/"))
        .await
        .unwrap()
        .into_inner();
    let mut private = webhook("x", "http://10.0.0.1/hook");
    private.id = public.id;
    let status = expect_invalid(
        update_channel(&app, &token, private, &["target"]).await,
        "channel.webhook.url",
    );
    assert!(status.message().contains("private"), "{status:?}");
    assert_eq!(
        list_channels(&app, &token).await[0].target_digest,
        public.target_digest
    );
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

    // Changed: the id from the path, the mask from the query.
    let path = format!("/v1/channels/{id}?updateMask=name,notifyDegraded");
    let (status, changed) = app
        .json(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"name": "renamed", "notifyDegraded": false})),
            Some(&auth),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["name"], &changed["id"]),
        (&json!("renamed"), &json!(id))
    );
    assert!(changed.get("notifyDegraded").is_none(), "false: {changed}");
    assert_eq!(changed["targetDigest"], created["targetDigest"]);
    let path = format!("/v1/channels/{id}?updateMask=createdAt");
    let (status, body) = app
        .json(reqwest::Method::PATCH, &path, Some(json!({})), Some(&auth))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"],
        "update_mask"
    );

    // Deleted, then gone.
    for expected in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let path = format!("/v1/channels/{id}");
        let (status, body) = app
            .json(reqwest::Method::DELETE, &path, None, Some(&auth))
            .await;
        assert_eq!(status, expected, "{body}");
    }
}

pub async fn update_channel(
    app: &TestApp,
    token: &str,
    channel: pb::Channel,
    paths: &[&str],
) -> Result<tonic::Response<pb::Channel>, tonic::Status> {
    app.client
        .clone()
        .update_channel(authed(
            pb::UpdateChannelRequest {
                channel: Some(channel),
                update_mask: (!paths.is_empty()).then(|| pbjson_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
            token,
        ))
        .await
}

/// Sends a test event through `channel` and waits for `receiver` to get it.
async fn tested(
    app: &TestApp,
    token: &str,
    channel: i64,
    receiver: &Receiver,
) -> crate::notifications::Received {
    let before = receiver.got().len();
    app.client
        .clone()
        .test_channel(authed(pb::TestChannelRequest { id: channel }, token))
        .await
        .expect("test channel");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(got) = receiver.got().get(before) {
            return got.clone();
        }
        assert!(Instant::now() < deadline, "the test event did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_channel_is_changed_field_by_field_and_a_webhook_keeps_its_secret(backend: Backend) {
    let (first, second) = (
        Receiver::start(200, None).await,
        Receiver::start(200, None).await,
    );
    let app = spawn_app_with(backend, |s| {
        s.delivery.interval = Duration::from_millis(100);
    })
    .await;
    let (_, token) = app.user().await;
    let (a, b) = (
        app.add_url(&token, "https://example.com/a").await,
        app.add_url(&token, "https://example.com/b").await,
    );
    let mut new = webhook("hooks", &first.url());
    new.url_ids = vec![a.id];
    let created = create_channel(&app, &token, new)
        .await
        .unwrap()
        .into_inner();
    let secret = secret_of(&created).to_owned();
    assert_eq!(created.target_digest.len(), 16, "{created:?}");

    // The name only: the rest stays, the digest too.
    let mut change = webhook("renamed", "https://ignored.example.com/");
    change.id = created.id;
    let renamed = update_channel(&app, &token, change.clone(), &["name"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.url_ids, vec![a.id]);
    assert_eq!(renamed.target_digest, created.target_digest);
    assert_eq!(secret_of(&renamed), "", "a kept secret is not shown again");

    // A new webhook URL keeps the secret: the receiver's key still verifies.
    change.target = webhook("", &second.url()).target;
    let moved = update_channel(&app, &token, change.clone(), &["target"])
        .await
        .unwrap()
        .into_inner();
    assert_ne!(moved.target_digest, created.target_digest);
    assert_eq!(secret_of(&moved), "");
    let got = tested(&app, &token, created.id, &second).await;
    verify(&secret, &got);
    assert!(first.got().is_empty(), "sent to the new URL only");

    // URLs (camelCase path too) and notify_degraded; an empty mask means
    // the fields set.
    change.url_ids = vec![b.id, a.id];
    change.notify_degraded = true;
    let relinked = update_channel(&app, &token, change.clone(), &["urlIds", "notify_degraded"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (relinked.url_ids, relinked.notify_degraded),
        (vec![a.id, b.id], true)
    );
    let mut all = pb::Channel {
        id: created.id,
        ..Default::default()
    };
    let for_all = update_channel(&app, &token, all.clone(), &["url_ids"])
        .await
        .unwrap()
        .into_inner();
    assert!(for_all.url_ids.is_empty(), "empty: all of the owner's URLs");
    all.name = "by mask of what is set".into();
    let implied = update_channel(&app, &token, all, &[])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(implied.name, "by mask of what is set");
    assert!(implied.notify_degraded, "unset fields stay as they were");

    // Another kind, then a webhook again: a new secret, shown once.
    let mut to_slack = pb::Channel {
        id: created.id,
        target: Some(Target::Slack(pb::SlackTarget {
            webhook_url: format!("{}/services/T0/B0/X", second.url()),
        })),
        ..Default::default()
    };
    let slack = update_channel(&app, &token, to_slack.clone(), &["slack"])
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(slack.target, Some(Target::Slack(_))), "{slack:?}");
    to_slack.target = webhook("", &second.url()).target;
    let again = update_channel(&app, &token, to_slack, &["target"])
        .await
        .unwrap()
        .into_inner();
    let new_secret = secret_of(&again).to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    verify(
        &new_secret,
        &tested(&app, &token, created.id, &second).await,
    );
    let listed = list_channels(&app, &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(secret_of(&listed[0]), "", "listed without its secret");
    assert_eq!(listed[0].target_digest, again.target_digest);
}

async fn bad_channel_changes_are_refused_by_field_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.user().await;
    let (_, bob) = app.user().await;
    let bobs_url = app.add_url(&bob, "https://example.com/bob").await;
    let bobs = create_channel(&app, &bob, webhook("b", "https://hooks.example.com/b"))
        .await
        .unwrap()
        .into_inner();
    let mine = create_channel(&app, &alice, webhook("a", "https://hooks.example.com/a"))
        .await
        .unwrap()
        .into_inner();
    let with = |f: &dyn Fn(&mut pb::Channel)| {
        let mut c = mine.clone();
        c.target = webhook("", "https://hooks.example.com/a").target;
        f(&mut c);
        c
    };
    let cases: Vec<(pb::Channel, &[&str], &str)> = vec![
        (with(&|c| c.name = " ".into()), &["name"], "channel.name"),
        (
            with(&|c| c.target = webhook("", "ftp://x/").target),
            &["target"],
            "channel.webhook.url",
        ),
        (with(&|c| c.target = None), &["target"], "channel.target"),
        (
            with(&|c| c.url_ids = vec![0]),
            &["url_ids"],
            "channel.url_ids",
        ),
        (with(&|_| {}), &["secret"], "update_mask"),
        (with(&|_| {}), &["created_at"], "update_mask"),
        (with(&|_| {}), &["target_digest"], "update_mask"),
        (with(&|_| {}), &["id"], "update_mask"),
    ];
    for (channel, paths, field) in cases {
        expect_invalid(update_channel(&app, &alice, channel, paths).await, field);
    }
    expect_invalid(
        app.client
            .clone()
            .update_channel(authed(
                pb::UpdateChannelRequest {
                    channel: None,
                    update_mask: None,
                },
                &alice,
            ))
            .await,
        "channel",
    );
    // Another user's channel, or URL: not found, and nothing changed.
    let mut theirs = bobs.clone();
    theirs.name = "taken".into();
    let status = expect_code(
        update_channel(&app, &alice, theirs, &["name"]).await,
        Code::NotFound,
    );
    assert!(status.message().contains("no channel"), "{status:?}");
    let status = expect_code(
        update_channel(
            &app,
            &alice,
            with(&|c| c.url_ids = vec![bobs_url.id]),
            &["url_ids", "name"],
        )
        .await,
        Code::NotFound,
    );
    assert!(
        status.message().contains(&bobs_url.id.to_string()),
        "{status:?}"
    );
    let mut unchanged = mine;
    unchanged.target = webhook("", "https://hooks.example.com/a").target;
    assert_eq!(list_channels(&app, &alice).await, vec![unchanged]);
    assert_eq!(list_channels(&app, &bob).await[0].name, "b");
}

/// Many changes of one channel at once (each reads its URLs, then writes)
/// all succeed: on SQLite a transaction that read first used to be refused
/// at its first write ("database is locked", INTERNAL) when another had
/// written in between.
async fn concurrent_changes_of_a_channel_all_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut new = webhook("hooks", "https://hooks.example.com/");
    new.url_ids = vec![url.id];
    let created = create_channel(&app, &token, new)
        .await
        .unwrap()
        .into_inner();
    let changes = (0..24).map(|i| {
        let mut change = webhook(&format!("hooks {i}"), "https://ignored.example.com/");
        change.id = created.id;
        change.url_ids = vec![url.id];
        update_channel(&app, &token, change, &["name", "url_ids"])
    });
    for changed in futures_util::future::join_all(changes).await {
        changed.expect("a valid change succeeds");
    }
}

crate::on_both_backends!(
    a_channel_is_changed_field_by_field_and_a_webhook_keeps_its_secret,
    concurrent_changes_of_a_channel_all_succeed,
    bad_channel_changes_are_refused_by_field_and_change_nothing,
    a_webhook_channel_is_created_listed_without_its_secret_and_deleted,
    another_users_channels_and_urls_are_not_found,
    bad_channels_are_refused_by_field_and_nothing_is_added,
    a_private_address_is_refused_unless_private_targets_are_allowed,
    channels_past_the_quota_are_refused,
    a_deleted_url_leaves_its_channels_without_it,
    channels_over_json,
);
