//! Register and Login.

use monitor::{proto::monitor::v1 as pb, store::users};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, expect_code, expect_invalid, spawn_app};

fn register_req(email: &str, password: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        email: email.into(),
        password: password.into(),
    }
}

fn login_req(email: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    }
}

async fn register_returns_the_new_id_and_the_normalized_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .client
        .clone()
        .register(register_req("  Alice@Example.COM ", PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.id > 0);
    assert_eq!(resp.email, "alice@example.com");
}

async fn register_stores_only_an_argon2id_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, _) = app.register().await;
    let user = users::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        user.password_hash
    );
    assert!(!user.password_hash.contains(PASSWORD));
}

async fn register_rejects_malformed_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    for bad in [
        "",
        "   ",
        "alice",
        "alice@",
        "@example.com",
        "a b@example.com",
        "Alice <a@example.com>",
    ] {
        let r = app
            .client
            .clone()
            .register(register_req(bad, PASSWORD))
            .await;
        expect_invalid(r, "email");
    }
    let long = format!("{}@example.com", "a".repeat(400));
    expect_invalid(
        app.client
            .clone()
            .register(register_req(&long, PASSWORD))
            .await,
        "email",
    );
}

async fn register_rejects_passwords_outside_8_to_1024_bytes(backend: Backend) {
    let app = spawn_app(backend).await;
    for bad in [String::new(), "short12".into(), "x".repeat(1025)] {
        let status = expect_invalid(
            app.client
                .clone()
                .register(register_req("bob@example.com", &bad))
                .await,
            "password",
        );
        if !bad.is_empty() {
            assert!(!status.message().contains(&bad), "the password was echoed");
        }
    }
    // Nothing was written by the failed attempts.
    let n = users::Entity::find().all(&app.db).await.unwrap().len();
    assert_eq!(n, 0);
    // The bounds themselves are accepted.
    app.client
        .clone()
        .register(register_req("eight@example.com", "12345678"))
        .await
        .unwrap();
    app.client
        .clone()
        .register(register_req("long@example.com", &"y".repeat(1024)))
        .await
        .unwrap();
}

async fn register_twice_with_the_same_email_in_any_case_is_already_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    app.client
        .clone()
        .register(register_req("carol@example.com", PASSWORD))
        .await
        .unwrap();
    for again in [
        "carol@example.com",
        "CAROL@example.com",
        " Carol@Example.com",
    ] {
        expect_code(
            app.client
                .clone()
                .register(register_req(again, PASSWORD))
                .await,
            Code::AlreadyExists,
        );
    }
    let n = users::Entity::find()
        .filter(users::Column::Email.eq("carol@example.com"))
        .all(&app.db)
        .await
        .unwrap()
        .len();
    assert_eq!(n, 1);
}

async fn concurrent_registrations_of_one_email_create_one_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut client = app.new_client().await;
        tasks.push(tokio::spawn(async move {
            client
                .register(register_req("race@example.com", PASSWORD))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn login_returns_a_paseto_token_that_expires_in_an_hour(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, email) = app.register().await;
    let resp = app
        .client
        .clone()
        .login(login_req(&email.to_uppercase(), PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.token.starts_with("v4.local."), "{}", resp.token);
    let expires = resp.expires_at.unwrap().seconds;
    let now = chrono::Utc::now().timestamp();
    assert!(
        (expires - now - 3600).abs() <= 5,
        "expires {expires}, now {now}"
    );
}

async fn login_with_unknown_email_or_wrong_password_gives_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, email) = app.register().await;
    let wrong = expect_code(
        app.client
            .clone()
            .login(login_req(&email, "not the password"))
            .await,
        Code::Unauthenticated,
    );
    let unknown = expect_code(
        app.client
            .clone()
            .login(login_req("nobody@example.com", PASSWORD))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), unknown.message());
    assert!(!wrong.message().contains("not the password"));
}

async fn login_rejects_malformed_input(backend: Backend) {
    let app = spawn_app(backend).await;
    expect_invalid(
        app.client.clone().login(login_req("", PASSWORD)).await,
        "email",
    );
    expect_invalid(
        app.client
            .clone()
            .login(login_req("a@example.com", ""))
            .await,
        "password",
    );
    expect_invalid(
        app.client
            .clone()
            .login(login_req("a@example.com", &"z".repeat(2000)))
            .await,
        "password",
    );
}

/// Register, then at once Login and AddUrl (which raises the quota counter
/// on the account's row), many at a time on freshly started servers: every
/// account is read back whole. (Once, on SQLite, a Register failed reading
/// the new account back with "Missing value for column 'url_count'".)
async fn accounts_registered_at_once_on_a_fresh_server_are_read_back_whole(backend: Backend) {
    for _ in 0..3 {
        let app = spawn_app(backend).await;
        let calls = (0..12).map(|i| {
            let app = &app;
            async move {
                let (id, token) = app.user().await;
                let url = app
                    .add_url(&token, &format!("https://example.com/{i}"))
                    .await;
                (id, url.id)
            }
        });
        let done = futures_util::future::join_all(calls).await;
        assert_eq!(done.len(), 12);
        assert!(done.iter().all(|(id, url)| *id > 0 && *url > 0));
    }
}

crate::on_both_backends!(
    accounts_registered_at_once_on_a_fresh_server_are_read_back_whole,
    register_returns_the_new_id_and_the_normalized_email,
    register_stores_only_an_argon2id_hash,
    register_rejects_malformed_emails,
    register_rejects_passwords_outside_8_to_1024_bytes,
    register_twice_with_the_same_email_in_any_case_is_already_exists,
    concurrent_registrations_of_one_email_create_one_account,
    login_returns_a_paseto_token_that_expires_in_an_hour,
    login_with_unknown_email_or_wrong_password_gives_the_same_answer,
    login_rejects_malformed_input,
);
