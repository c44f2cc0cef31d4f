//! The JSON gateway over a real socket: canonical proto3 JSON, the error
//! shape and statuses, every bad input it handles, the seed's curl session,
//! and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, prober_settings, spawn_app, spawn_app_with},
    target::Target,
};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts the grpc-gateway error shape and returns the message.
fn expect_error(got: &(StatusCode, Value), status: StatusCode, code: i64) -> String {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["details"].is_array(), "{body}");
    body["message"].as_str().expect("message").to_owned()
}

async fn json_user(app: &TestApp) -> String {
    let email = format!("json-{}@example.com", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": PASSWORD});
    let (s, _) = app.post_json("/v1/users", creds.clone(), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, login) = app.post_json("/v1/login", creds, None).await;
    assert_eq!(s, StatusCode::OK);
    login["token"].as_str().unwrap().to_owned()
}

async fn every_rpc_answers_canonical_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = format!("json-{}@example.com", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": PASSWORD});

    let (s, user) = app.post_json("/v1/users", creds.clone(), None).await;
    assert_eq!(s, StatusCode::OK, "{user}");
    assert!(
        user["id"].as_str().unwrap().parse::<i64>().unwrap() > 0,
        "int64 as a string: {user}"
    );
    assert_eq!(user["email"], email);
    assert!(!user.to_string().contains(PASSWORD));

    let (s, login) = app.post_json("/v1/login", creds, None).await;
    assert_eq!(s, StatusCode::OK);
    let token = login["token"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(login["expiresAt"].as_str().unwrap()).unwrap();

    let auth = bearer(token);
    let (s, added) = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com/a", "period": "120s"}),
            Some(&auth),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{added}");
    let url = &added["url"];
    assert_eq!(url["url"], "https://example.com/a");
    assert_eq!(url["period"], "120s");
    chrono::DateTime::parse_from_rfc3339(url["createdAt"].as_str().unwrap()).unwrap();
    let id = url["id"].as_str().unwrap().to_owned();

    let (s, list) = app.get_json("/v1/urls", Some(&auth)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["urls"][0]["id"], id.as_str());

    // Query parameters in either spelling; no statuses yet.
    for q in ["pageSize=10", "page_size=10&startTime=2026-01-01T00:00:00Z"] {
        let (s, page) = app
            .get_json(&format!("/v1/urls/{id}/statuses?{q}"), Some(&auth))
            .await;
        assert_eq!(s, StatusCode::OK, "{q}: {page}");
        assert!(
            page.get("statuses").is_none_or(|v| v == &json!([])),
            "{page}"
        );
    }

    let (s, deleted) = app
        .json(Method::DELETE, &format!("/v1/urls/{id}"), None, Some(&auth))
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    let gone = app
        .json(Method::DELETE, &format!("/v1/urls/{id}"), None, Some(&auth))
        .await;
    expect_error(&gone, StatusCode::NOT_FOUND, 5);
}

async fn field_names_are_accepted_in_both_spellings(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = json_user(&app).await;
    let (s, body) = app
        .get_json(
            "/v1/urls/1/statuses?page_token=&end_time=2030-01-01T00:00:00Z",
            Some(&bearer(&token)),
        )
        .await;
    // Parsed (both snake_case names), then NOT_FOUND for a URL not ours.
    expect_error(&(s, body), StatusCode::NOT_FOUND, 5);
}

async fn the_seeds_curl_session_works_as_written(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let email = format!("Seed-{}@Example.com", uuid::Uuid::new_v4().simple());

    let (s, reg) = app
        .post_json(
            "/register",
            json!({"Email": email, "Password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{reg}");

    // Field names in any case, as the seed's Go decoder matched them.
    let (s, login) = app
        .post_json(
            "/login",
            json!({"email": email, "PASSWORD": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();

    // The seed sends the bare token; Period is in minutes.
    let (s, added) = app
        .post_json(
            "/url",
            json!({"URL": target.url("/ok"), "Period": 2}),
            Some(&token),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added["url"]["period"], "120s");
    let id = added["url"]["id"].as_str().unwrap().to_owned();

    // Unset Period is the seed's default, one minute.
    let (s, second) = app
        .post_json("/url", json!({"url": target.url("/two")}), Some(&token))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["url"]["period"], "60s");

    // What the seed lacked: reading the statuses, through the v1 route.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, page) = app
            .get_json(&format!("/v1/urls/{id}/statuses"), Some(&token))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        if let Some(first) = page["statuses"].get(0) {
            assert_eq!(first["statusCode"], 200);
            assert!(first["latency"].as_str().unwrap().ends_with('s'));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no status recorded");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

crate::on_both_backends!(
    every_rpc_answers_canonical_json,
    field_names_are_accepted_in_both_spellings,
    the_seeds_curl_session_works_as_written,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_routes_refuse_bad_input_with_the_field_named() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = json_user(&app).await;
    for (body, field) in [
        (json!({"URL": "https://example.com", "Period": 0}), "Period"),
        (
            json!({"URL": "https://example.com", "Period": "2"}),
            "Period",
        ),
        (
            json!({"URL": "https://example.com", "Period": 1.5}),
            "Period",
        ),
        (
            json!({"URL": "https://example.com", "Period": 101}),
            "period",
        ),
        (json!({"URL": 7}), "URL"),
        (json!({"Period": 2}), "url"),
        (json!({"URL": "ftp://example.com"}), "url"),
        (json!(["not", "an", "object"]), "body"),
    ] {
        let got = app.post_json("/url", body.clone(), Some(&token)).await;
        let message = expect_error(&got, StatusCode::BAD_REQUEST, 3);
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let got = app
        .post_json(
            "/register",
            json!({"Email": "nope", "Password": PASSWORD}),
            None,
        )
        .await;
    expect_error(&got, StatusCode::BAD_REQUEST, 3);
    let got = app
        .post_json("/url", json!({"URL": "https://example.com"}), None)
        .await;
    expect_error(&got, StatusCode::UNAUTHORIZED, 16);
    let got = app
        .post_json(
            "/login",
            json!({"Email": "who@example.com", "Password": PASSWORD}),
            None,
        )
        .await;
    expect_error(&got, StatusCode::UNAUTHORIZED, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_grpc_gateway_statuses_codes_and_details() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.urls.max_urls_per_user = 1).await;
    let token = json_user(&app).await;
    let auth = bearer(&token);

    // INVALID_ARGUMENT with google.rpc.BadRequest naming the field.
    let (s, body) = app
        .post_json("/v1/urls", json!({"url": "ftp://x"}), Some(&auth))
        .await;
    expect_error(&(s, body.clone()), StatusCode::BAD_REQUEST, 3);
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "url");

    let ok = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com"}),
            Some(&auth),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK);
    // ALREADY_EXISTS -> 409, RESOURCE_EXHAUSTED (quota) -> 429.
    let dup = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com"}),
            Some(&auth),
        )
        .await;
    expect_error(&dup, StatusCode::CONFLICT, 6);
    let quota = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.org"}),
            Some(&auth),
        )
        .await;
    expect_error(&quota, StatusCode::TOO_MANY_REQUESTS, 8);

    // UNAUTHENTICATED: missing, forged, and a bare token is fine.
    let missing = app.get_json("/v1/urls", None).await;
    let message = expect_error(&missing, StatusCode::UNAUTHORIZED, 16);
    assert!(message.contains("Bearer"), "{message}");
    let forged = app
        .get_json("/v1/urls", Some("Bearer v4.local.forged"))
        .await;
    expect_error(&forged, StatusCode::UNAUTHORIZED, 16);
    let bare = app.get_json("/v1/urls", Some(&token)).await;
    assert_eq!(bare.0, StatusCode::OK);

    // Another user's URL is NOT_FOUND.
    let id = ok.1["url"]["id"].as_str().unwrap().to_owned();
    let other = bearer(&json_user(&app).await);
    let theirs = app
        .get_json(&format!("/v1/urls/{id}/statuses"), Some(&other))
        .await;
    expect_error(&theirs, StatusCode::NOT_FOUND, 5);
    let theirs = app
        .json(
            Method::DELETE,
            &format!("/v1/urls/{id}"),
            None,
            Some(&other),
        )
        .await;
    expect_error(&theirs, StatusCode::NOT_FOUND, 5);
}

/// Sends a raw body with a content type; returns status, headers, JSON.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
    auth: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .request(method, app.http_url(path))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, clippy::type_complexity)] // one table of cases
async fn malformed_requests_get_json_errors_never_a_500() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.http_max_body = 4096).await;
    let token = json_user(&app).await;
    let auth = bearer(&token);
    let json_ct = Some("application/json");

    let cases: Vec<(
        &str,
        Method,
        &str,
        Option<&str>,
        String,
        StatusCode,
        i64,
        &str,
    )> = vec![
        (
            "malformed JSON",
            Method::POST,
            "/v1/users",
            json_ct,
            "{\"email\": ".into(),
            StatusCode::BAD_REQUEST,
            3,
            "JSON",
        ),
        (
            "wrong type",
            Method::POST,
            "/v1/users",
            json_ct,
            r#"{"email": 5, "password": "x"}"#.into(),
            StatusCode::BAD_REQUEST,
            3,
            "email",
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/users",
            json_ct,
            r#"{"email": "a@b.co", "password": "xxxxxxxx", "admin": true}"#.into(),
            StatusCode::BAD_REQUEST,
            3,
            "unknown field",
        ),
        (
            "bad duration",
            Method::POST,
            "/v1/urls",
            json_ct,
            r#"{"url": "https://example.com", "period": "soon"}"#.into(),
            StatusCode::BAD_REQUEST,
            3,
            "period",
        ),
        (
            "seed malformed JSON",
            Method::POST,
            "/url",
            json_ct,
            "{".into(),
            StatusCode::BAD_REQUEST,
            3,
            "JSON",
        ),
        (
            "not JSON at all",
            Method::POST,
            "/v1/login",
            Some("text/plain"),
            "hi".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            "application/json",
        ),
        (
            "over the size limit",
            Method::POST,
            "/v1/users",
            json_ct,
            format!(r#"{{"email": "{}"}}"#, "a".repeat(8192)),
            StatusCode::PAYLOAD_TOO_LARGE,
            3,
            "MONITOR_HTTP_MAX_BODY",
        ),
        (
            "unknown route",
            Method::GET,
            "/v2/nothing",
            None,
            String::new(),
            StatusCode::NOT_FOUND,
            5,
            "/v2/nothing",
        ),
        (
            "wrong method",
            Method::PUT,
            "/v1/urls",
            json_ct,
            "{}".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            12,
            "not allowed",
        ),
        (
            "id not a number",
            Method::DELETE,
            "/v1/urls/abc",
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
            3,
            "abc",
        ),
        (
            "query of the wrong type",
            Method::GET,
            "/v1/urls/1/statuses?pageSize=many",
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
            3,
            "query",
        ),
        (
            "page size over the limit",
            Method::GET,
            "/v1/urls/1/statuses?pageSize=5000",
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
            3,
            "page_size",
        ),
        (
            "bad time in the query",
            Method::GET,
            "/v1/urls/1/statuses?startTime=yesterday",
            None,
            String::new(),
            StatusCode::BAD_REQUEST,
            3,
            "query",
        ),
    ];
    for (what, method, path, ct, body, status, code, mentions) in cases {
        let (s, headers, got) = raw(&app, method.clone(), path, ct, body, Some(&auth)).await;
        assert_eq!(s, status, "{what}: {got}");
        assert_eq!(got["code"], code, "{what}: {got}");
        let message = got["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{what}: {message}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{what}"
        );
        if s == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key("allow"), "{what}: no Allow header");
        }
    }
}

/// Sends `request` as it is over a new connection; returns the status, the
/// lower-cased head and the body (hyper answers these itself, before any
/// route; the HTTP client cannot even build a URI of 64 KiB).
async fn raw_bytes(app: &TestApp, request: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(app.http_addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The server may answer and close before it has read everything (a
    // head over its buffer); the answer is read while the request is
    // written, before the reset that unread bytes cause can discard it.
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        read.read_to_end(&mut answer),
    )
    .await;
    drop(writer.await);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// What hyper answers before any route (a URI too long, a head too large, a
/// request line that does not parse) and what a route answers to a method
/// it does not take both come in the JSON error shape, saying what to do
/// (issue 13, item 6: 414 had an empty body, 405 said "use another method").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_and_wrong_methods_get_json_errors_that_say_what_to_do() {
    let app = spawn_app(Backend::Sqlite).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: m\r\n\r\n", "a".repeat(70_000));
    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nhost: m\r\nx-big: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    for (what, request, status, mentions) in [
        (
            "URI of 70,000 bytes",
            long_uri.as_bytes(),
            414,
            "URI too long",
        ),
        ("head of 500 KB", big_head.as_bytes(), 431, "too large"),
        (
            "garbage request line",
            &b"HELLO THERE\r\n\r\n"[..],
            400,
            "malformed",
        ),
    ] {
        let (got, head, body) = raw_bytes(&app, request).await;
        eprintln!("{what}: {got} {body}");
        assert_eq!(got, status, "{what}: {head}\n{body}");
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        assert_eq!(json["code"], 3, "{what}: {json}");
        assert!(
            json["message"].as_str().unwrap().contains(mentions),
            "{what}: {json}"
        );
    }

    for (method, path, allowed) in [
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::DELETE, "/metrics", "GET, HEAD"),
        (Method::GET, "/v1/users", "POST"),
        (Method::PUT, "/register", "POST"),
        // Routes that need a token: a method they lack is 405 with or
        // without one, never 401 (issue 19).
        (Method::PUT, "/v1/urls", "POST, GET, HEAD"),
        (Method::PATCH, "/v1/incidents", "GET, HEAD"),
    ] {
        let (s, headers, got) = raw(&app, method.clone(), path, None, "", None).await;
        eprintln!("{method} {path}: {s} {got}");
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{got}");
        assert_eq!(got["code"], 12, "{got}");
        let message = got["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("allowed: {allowed}")),
            "{method} {path}: {message}"
        );
        assert_eq!(headers["allow"], allowed, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_without_a_content_type_is_read_as_json() {
    let app = spawn_app(Backend::Sqlite).await;
    let email = format!("curl-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({"Email": email, "Password": PASSWORD}).to_string();
    // `curl -d` sends application/x-www-form-urlencoded.
    let (s, _, got) = raw(
        &app,
        Method::POST,
        "/register",
        Some("application/x-www-form-urlencoded"),
        body.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{got}");
    let (s, _, got) = raw(&app, Method::POST, "/login", None, body, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_describes_every_route() {
    let app = spawn_app(Backend::Sqlite).await;
    let (s, doc) = app.get_json("/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/users",
        "/v1/login",
        "/v1/urls",
        "/v1/urls/{id}",
        "/v1/urls/{url_id}/statuses",
        "/register",
        "/login",
        "/url",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}
