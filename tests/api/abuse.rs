//! Abuse: failed logins lock the account and the peer with retry
//! information, and a token key can be rotated without logging users out.

use std::time::Duration;

use monitor::proto::monitor::v1 as pb;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Backend, PASSWORD, TestApp, authed, spawn_app_with};

async fn login(app: &TestApp, email: &str, password: &str) -> Result<String, tonic::Status> {
    app.client
        .clone()
        .login(pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

fn expect_locked(status: &tonic::Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("try again in"),
        "{}",
        status.message()
    );
    status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo in the details")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_the_account_with_retry_information_then_unlock() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.login.per_account = 3;
        s.auth.login.period = Duration::from_secs(2);
    })
    .await;
    let (_, victim) = app.register().await;
    let (_, other) = app.register().await;
    for _ in 0..3 {
        let err = login(&app, &victim, "wrong-password!").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    // The failure past the burst locks the account.
    expect_locked(&login(&app, &victim, "wrong-password!").await.unwrap_err());
    // Locked: even the right password is refused, before any hashing.
    let err = login(&app, &victim, PASSWORD).await.unwrap_err();
    let wait = expect_locked(&err);
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3),
        "{wait:?}"
    );
    // The same answer over JSON: 429 with Retry-After and RetryInfo.
    let res = reqwest::Client::new()
        .post(app.http_url("/v1/login"))
        .json(&json!({"email": victim, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], 8);
    assert!(
        body["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"),
        "{body}"
    );
    // Other accounts are not affected.
    login(&app, &other, PASSWORD).await.unwrap();
    // The lock lifts once the bucket refills.
    tokio::time::sleep(wait + Duration::from_millis(500)).await;
    login(&app, &victim, PASSWORD).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_peer_lock_the_peer() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.login.per_account = 100;
        s.auth.login.per_peer = 3;
        s.auth.login.period = Duration::from_secs(60);
    })
    .await;
    let (_, fresh) = app.register().await;
    // Guessing across many accounts from one address.
    for i in 0..3 {
        let err = login(&app, &format!("nobody-{i}@example.com"), "guess-guess")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    expect_locked(
        &login(&app, "nobody-9@example.com", "guess-guess")
            .await
            .unwrap_err(),
    );
    expect_locked(&login(&app, &fresh, PASSWORD).await.unwrap_err());
    let (status, body) = app
        .post_json(
            "/login",
            json!({"Email": fresh, "Password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_token_key_still_verifies_during_a_rotation() {
    let old_key = [1u8; 32];
    let new_key = [2u8; 32];
    let mut old = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.token_key = Some(hex::encode(old_key));
    })
    .await;
    let (_, email) = old.register().await;
    let old_token = old.login(&email).await;
    old.stop().await;

    let rotated = old
        .sibling(|s| {
            s.auth.token_key = Some(hex::encode(new_key));
            s.auth.token_key_previous = Some(hex::encode(old_key));
        })
        .await;
    let list = |token: String| {
        let mut client = rotated.client.clone();
        async move {
            client
                .list_urls(authed(pb::ListUrlsRequest {}, &token))
                .await
        }
    };
    list(old_token.clone())
        .await
        .expect("a token of the previous key still works");
    let new_token = rotated.login(&email).await;
    list(new_token)
        .await
        .expect("new tokens are signed with the new key");

    // After the rotation window: only the new key.
    let after = old
        .sibling(|s| s.auth.token_key = Some(hex::encode(new_key)))
        .await;
    let err = after
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &old_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Registering costs an argon2 hash and says whether an email is taken:
/// limited per peer address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_peer() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.login.register_per_peer = 3;
    })
    .await;
    for _ in 0..3 {
        app.register().await;
    }
    let err = app
        .client
        .clone()
        .register(monitor::proto::monitor::v1::RegisterRequest {
            email: "one-too-many@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    expect_locked(&err);
    // The same answer over JSON, with Retry-After.
    let (status, body) = app
        .post_json(
            "/v1/users",
            json!({"email": "json-too-many@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}
