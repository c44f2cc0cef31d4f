//! The auth layer: which calls need a token, and which tokens pass.

use std::time::Duration;

use monitor::proto::monitor::v1 as pb;
use pasetors::{claims::Claims, keys::SymmetricKey, local, version4::V4};
use tonic::Code;

use crate::helpers::{Backend, authed, expect_code, spawn_app, with_authorization};

/// A token made with `key` for `user`, expiring at `exp` (RFC 3339).
fn craft_token(key: &[u8; 32], user: i64, exp: &str) -> String {
    let key = SymmetricKey::<V4>::from(key).unwrap();
    let mut claims = Claims::new().unwrap();
    claims.subject(&user.to_string()).unwrap();
    claims.expiration(exp).unwrap();
    local::encrypt(&key, &claims, None, Some(b"monitor.v1")).unwrap()
}

async fn every_protected_rpc_without_a_token_is_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client.clone();
    let msgs = [
        c.add_url(pb::AddUrlRequest {
            url: "https://example.com".into(),
            period: None,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        c.list_urls(pb::ListUrlsRequest {}).await.map(|_| ()),
        c.delete_url(pb::DeleteUrlRequest { id: 1 })
            .await
            .map(|_| ()),
        c.list_statuses(pb::ListStatusesRequest {
            url_id: 1,
            ..Default::default()
        })
        .await
        .map(|_| ()),
    ];
    for r in msgs {
        let status = r.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("Bearer"), "{}", status.message());
    }
}

async fn forged_garbage_and_foreign_tokens_are_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, token) = app.user().await;
    let mid = token.len() / 2;
    let flipped = if &token[mid..=mid] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..mid], &token[mid + 1..]);
    let other_key = craft_token(&[9; 32], id, "2099-01-01T00:00:00+00:00");
    for bad in [
        "Bearer ".to_owned(),
        "Bearer not-a-token".into(),
        "Basic dXNlcjpwYXNz".into(),
        format!("Bearer {tampered}"),
        format!("Bearer {other_key}"),
    ] {
        let r = app
            .client
            .clone()
            .list_urls(with_authorization(pb::ListUrlsRequest {}, &bad))
            .await;
        expect_code(r, Code::Unauthenticated);
    }
}

async fn an_expired_token_is_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, _) = app.user().await;
    let expired = craft_token(&app.token_key, id, "2020-01-01T00:00:00+00:00");
    let r = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &expired))
        .await;
    expect_code(r, Code::Unauthenticated);
    // The same user with a live token of the same key is let in.
    let live = craft_token(&app.token_key, id, "2099-01-01T00:00:00+00:00");
    app.client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &live))
        .await
        .unwrap();
}

async fn a_token_outlives_nothing_past_its_ttl(backend: Backend) {
    // A TTL long enough that the first call lands inside it on a loaded
    // machine (1 s failed once in a full run beside a compile), and a wait
    // measured from after the login, so the token has surely expired.
    let ttl = Duration::from_secs(5);
    let app = crate::helpers::spawn_app_with(backend, |s| s.auth.token_ttl = ttl).await;
    let (_, token) = app.user().await;
    let logged_in = tokio::time::Instant::now();
    app.client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .unwrap();
    // + 1.1 s: margin for an expiry written in whole seconds.
    tokio::time::sleep_until(logged_in + ttl + Duration::from_millis(1100)).await;
    expect_code(
        app.client
            .clone()
            .list_urls(authed(pb::ListUrlsRequest {}, &token))
            .await,
        Code::Unauthenticated,
    );
}

async fn a_bare_token_and_any_case_of_bearer_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    for value in [
        token.clone(),
        format!("bearer {token}"),
        format!("BEARER {token}"),
    ] {
        app.client
            .clone()
            .list_urls(with_authorization(pb::ListUrlsRequest {}, &value))
            .await
            .unwrap();
    }
}

crate::on_both_backends!(
    every_protected_rpc_without_a_token_is_unauthenticated,
    forged_garbage_and_foreign_tokens_are_unauthenticated,
    an_expired_token_is_unauthenticated,
    a_token_outlives_nothing_past_its_ttl,
    a_bare_token_and_any_case_of_bearer_are_accepted,
);
