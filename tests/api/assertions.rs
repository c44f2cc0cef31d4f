//! Assertions (issue 15) end to end, on both backends: set through AddUrl
//! and UpdateUrl (gRPC and JSON), refused by name when bad, evaluated by
//! real probes of local targets (a slow route, body, header and JSON
//! mismatches, status ranges, an https target whose certificate the test
//! made to expire in 5 days), and fed to statuses, states, incidents and
//! GetUrlStats.

use std::time::Duration;

use monitor::proto::monitor::v1::{
    self as pb, AssertionSeverity as Severity, ErrorKind, Granularity, UrlState, assertion::Check,
    header_assertion::Expect,
};
use serde_json::json;

use crate::{
    helpers::{
        Backend, TestApp, authed, expect_invalid, prober_settings, spawn_app, spawn_app_with,
    },
    target::{Target, TlsTarget},
};

fn assertion(severity: Severity, check: Check) -> pb::Assertion {
    pb::Assertion {
        severity: severity as i32,
        check: Some(check),
    }
}

pub(crate) fn down(check: Check) -> pb::Assertion {
    assertion(Severity::Unspecified, check)
}

pub(crate) fn degraded(check: Check) -> pb::Assertion {
    assertion(Severity::Degraded, check)
}

fn status(codes: &[&str]) -> Check {
    Check::Status(pb::StatusAssertion {
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
    })
}

pub(crate) fn max_latency(ms: u64) -> Check {
    Check::MaxLatency(Duration::from_millis(ms).into())
}

fn header(name: &str, expect: Expect) -> Check {
    Check::Header(pb::HeaderAssertion {
        name: name.into(),
        expect: Some(expect),
    })
}

fn json_at(pointer: &str, value: serde_json::Value) -> Check {
    Check::Json(pb::JsonAssertion {
        pointer: pointer.into(),
        value: Some(serde_json::from_value(value).unwrap()),
    })
}

pub(crate) async fn add(
    app: &TestApp,
    token: &str,
    url: &str,
    period_s: i64,
    assertions: Vec<pb::Assertion>,
) -> Result<pb::Url, tonic::Status> {
    app.client
        .clone()
        .add_url(authed(
            pb::AddUrlRequest {
                url: url.into(),
                period: Some(pbjson_types::Duration {
                    seconds: period_s,
                    nanos: 0,
                }),
                assertions,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().url.unwrap())
}

pub(crate) async fn update_assertions(
    app: &TestApp,
    token: &str,
    id: i64,
    assertions: Vec<pb::Assertion>,
) -> Result<tonic::Response<pb::Url>, tonic::Status> {
    app.client
        .clone()
        .update_url(authed(
            pb::UpdateUrlRequest {
                url: Some(pb::Url {
                    id,
                    assertions,
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask {
                    paths: vec!["assertions".into()],
                }),
            },
            token,
        ))
        .await
}

/// Waits until the URL is in `state` (at most 30 s).
pub(crate) async fn wait_for_state(
    app: &TestApp,
    token: &str,
    id: i64,
    state: UrlState,
) -> pb::Url {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let url = app.get_url(token, id).await;
        if url.state() == state {
            return url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "URL {id} still {:?}, not {state:?}",
            url.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first `n` statuses of a URL, once there are as many.
async fn first_statuses(app: &TestApp, token: &str, id: i64, n: usize) -> Vec<pb::Status> {
    let mut all = app
        .wait_for_statuses(token, id, n, Duration::from_secs(20))
        .await;
    all.truncate(n);
    all
}

fn failed(s: &pb::Status) -> Vec<(i32, &str)> {
    s.failed_assertions
        .iter()
        .map(|f| (f.index, f.message.as_str()))
        .collect()
}

/// `/hold` answers after 300 ms: over a 100 ms `max_latency`, a DEGRADED
/// assertion makes each probe DEGRADED and a DOWN one DOWN; the states,
/// incidents and GetUrlStats' `degraded` count follow.
async fn a_slow_answer_is_degraded_or_down_by_the_severity_of_its_assertion(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let slow = |q: &str| target.url(&format!("/hold?{q}"));
    let deg = add(
        &app,
        &token,
        &slow("degraded"),
        1,
        vec![degraded(max_latency(100))],
    )
    .await
    .unwrap();
    let dn = add(&app, &token, &slow("down"), 1, vec![down(max_latency(100))])
        .await
        .unwrap();
    let fast = add(
        &app,
        &token,
        &target.url("/ok"),
        1,
        vec![down(max_latency(5_000))],
    )
    .await
    .unwrap();

    for (url, verdict) in [(&deg, UrlState::Degraded), (&dn, UrlState::Down)] {
        for s in first_statuses(&app, &token, url.id, 3).await {
            assert_eq!((s.status_code, s.verdict()), (200, verdict), "{s:?}");
            let f = failed(&s);
            assert_eq!(f.len(), 1, "{s:?}");
            assert_eq!(f[0].0, 0);
            assert!(
                f[0].1.starts_with("took ") && f[0].1.ends_with("ms, more than 100ms"),
                "{f:?}"
            );
        }
    }
    for s in first_statuses(&app, &token, fast.id, 3).await {
        assert_eq!((s.verdict(), s.failed_assertions.len()), (UrlState::Up, 0));
    }

    // Three in a row (the default threshold) change the state and open one incident.
    wait_for_state(&app, &token, deg.id, UrlState::Degraded).await;
    wait_for_state(&app, &token, dn.id, UrlState::Down).await;
    wait_for_state(&app, &token, fast.id, UrlState::Up).await;
    for (url, state) in [(&deg, UrlState::Degraded), (&dn, UrlState::Down)] {
        let incidents = app.incidents(&token, url.id).await;
        assert_eq!(incidents.len(), 1, "{incidents:?}");
        assert_eq!(incidents[0].state(), state);
        assert_eq!(incidents[0].resolved_at, None);
        let first = incidents[0].first_failure.as_ref().unwrap();
        assert_eq!(first.verdict(), state, "{first:?}");
        assert_eq!(first.failed_assertions.len(), 1, "kept with the incident");
    }

    // GetUrlStats counts DEGRADED probes as degraded, and as up time.
    let now = chrono::Utc::now();
    for granularity in [Granularity::Minute, Granularity::Hour] {
        let stats = app
            .client
            .clone()
            .get_url_stats(authed(
                pb::GetUrlStatsRequest {
                    url_id: deg.id,
                    start_time: Some((now - chrono::Duration::hours(1)).into()),
                    end_time: None,
                    granularity: granularity as i32,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        let total = stats.total.unwrap();
        assert!(total.degraded >= 3, "{granularity:?}: {total:?}");
        assert_eq!((total.up, total.down), (0, 0), "{granularity:?}: {total:?}");
        assert_eq!(total.uptime, Some(1.0));
    }
}

/// Body, header and JSON checks on `/json`: all passing is UP; mismatches
/// are named by index with what was found; a DOWN one among them makes the
/// probe DOWN, DEGRADED ones alone DEGRADED.
async fn body_header_and_json_mismatches_are_named_by_index(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let pass = add(
        &app,
        &token,
        &target.url("/json?pass"),
        60,
        vec![
            down(status(&["200-299"])),
            down(Check::BodyContains("\"checks\"".into())),
            down(Check::BodyNotContains("error".into())),
            down(header("X-Version", Expect::Equals("3".into()))),
            down(header("content-type", Expect::Contains("json".into()))),
            down(json_at("/status", json!("ok"))),
            down(json_at("/checks/0/ok", json!(true))),
            down(json_at("/version", json!(3))),
        ],
    )
    .await
    .unwrap();
    let fail = add(
        &app,
        &token,
        &target.url("/json?fail"),
        60,
        vec![
            down(Check::BodyContains("\"status\"".into())),
            degraded(Check::BodyNotContains("\"ok\"".into())),
            degraded(header("x-version", Expect::Equals("4".into()))),
            degraded(json_at("/status", json!("down"))),
            degraded(json_at("/missing", json!(1))),
            down(header("x-missing", Expect::Contains("x".into()))),
        ],
    )
    .await
    .unwrap();
    let slightly = add(
        &app,
        &token,
        &target.url("/json?degraded"),
        60,
        vec![degraded(json_at("/version", json!(4)))],
    )
    .await
    .unwrap();
    let not_json = add(
        &app,
        &token,
        &target.url("/ok?json"),
        60,
        vec![down(json_at("/status", json!("ok")))],
    )
    .await
    .unwrap();

    let s = &first_statuses(&app, &token, pass.id, 1).await[0];
    assert_eq!((s.verdict(), failed(s)), (UrlState::Up, vec![]), "{s:?}");
    let s = &first_statuses(&app, &token, fail.id, 1).await[0];
    assert_eq!(s.verdict(), UrlState::Down, "{s:?}");
    assert_eq!(
        failed(s),
        vec![
            (1, "body has \"\\\"ok\\\"\" at byte 11"),
            (2, "x-version is \"3\", not \"4\""),
            (3, "\"/status\" is \"ok\", not \"down\""),
            (4, "nothing at \"/missing\""),
            (5, "no x-missing header"),
        ]
    );
    let s = &first_statuses(&app, &token, slightly.id, 1).await[0];
    assert_eq!(s.verdict(), UrlState::Degraded);
    assert_eq!(failed(s), vec![(0, "\"/version\" is 3, not 4")]);
    let s = &first_statuses(&app, &token, not_json.id, 1).await[0];
    assert_eq!(s.verdict(), UrlState::Down);
    assert!(
        s.failed_assertions[0]
            .message
            .starts_with("body is not JSON"),
        "{s:?}"
    );
    // Over JSON, as ListStatuses' route answers it.
    let (code, body) = app
        .get_json(
            &format!("/v1/urls/{}/statuses", fail.id),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let first = &body["statuses"][0];
    assert_eq!(first["verdict"], "URL_STATE_DOWN", "{body}");
    assert_eq!(first["failedAssertions"][0]["index"], 1, "{body}");
}

/// A status assertion replaces the default 200-399 rule.
async fn status_ranges_replace_the_default_rule(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let cases = [
        (
            "/fail?allowed",
            vec![down(status(&["500-599"]))],
            UrlState::Up,
            vec![],
        ),
        (
            "/redirect?strict",
            vec![down(status(&["200-299"]))],
            UrlState::Down,
            vec![(0, "status 302 is not 200-299")],
        ),
        ("/redirect?default", vec![], UrlState::Up, vec![]),
        ("/fail?default", vec![], UrlState::Down, vec![]),
        (
            "/fail?maintenance",
            vec![degraded(status(&["200", "204-299"]))],
            UrlState::Degraded,
            vec![(0, "status 500 is not 200, 204-299")],
        ),
        (
            "/ok?single",
            vec![down(status(&["200"]))],
            UrlState::Up,
            vec![],
        ),
    ];
    let mut added = Vec::new();
    for (path, assertions, _, _) in &cases {
        added.push(
            add(&app, &token, &target.url(path), 60, assertions.clone())
                .await
                .unwrap(),
        );
    }
    for ((path, _, verdict, want), url) in cases.iter().zip(&added) {
        let s = &first_statuses(&app, &token, url.id, 1).await[0];
        assert_eq!(s.verdict(), *verdict, "{path}: {s:?}");
        assert_eq!(&failed(s), want, "{path}");
    }
}

/// An https target whose certificate (made by the test, trusted through
/// `MONITOR_PROBE_EXTRA_ROOTS`) expires in 5 days, under `tls_days_left:
/// 14`: every probe is DEGRADED, with the date from the probe's own
/// handshake; the URL is DEGRADED with one incident however many probes
/// fail, resolved once the certificate is renewed.
async fn an_expiring_certificate_opens_one_incident_resolved_by_the_renewal(backend: Backend) {
    let tls = TlsTarget::start(5).await;
    let ca = tls.ca_pem.clone();
    let app = spawn_app_with(backend, move |s| {
        prober_settings(s);
        s.prober.probe.extra_roots = vec![ca];
    })
    .await;
    let (_, token) = app.user().await;
    let url = add(
        &app,
        &token,
        &tls.url("/ok"),
        1,
        vec![degraded(Check::TlsDaysLeft(14))],
    )
    .await
    .unwrap();
    let plain = add(&app, &token, &tls.url("/ok?plain"), 60, vec![])
        .await
        .unwrap();

    #[allow(clippy::cast_precision_loss)] // seconds of a few months
    let in_days = |t: Option<monitor::proto::Timestamp>| {
        let t = t.expect("tls_not_after");
        (t.seconds - chrono::Utc::now().timestamp()) as f64 / 86_400.0
    };
    for s in first_statuses(&app, &token, url.id, 5).await {
        assert_eq!(
            (s.status_code, s.verdict()),
            (200, UrlState::Degraded),
            "{s:?}"
        );
        let f = failed(&s);
        assert!(
            f.len() == 1 && f[0].1.contains("(in 5 days), fewer than 14"),
            "{f:?}"
        );
        assert!((5.0..5.1).contains(&in_days(s.tls_not_after)), "{s:?}");
    }
    let s = &first_statuses(&app, &token, plain.id, 1).await[0];
    assert_eq!(s.verdict(), UrlState::Up, "no assertion: only recorded");
    assert!((5.0..5.1).contains(&in_days(s.tls_not_after)));

    let now = wait_for_state(&app, &token, url.id, UrlState::Degraded).await;
    assert!((5.0..5.1).contains(&in_days(now.tls_not_after)), "{now:?}");
    let incidents = app.incidents(&token, url.id).await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].state(), UrlState::Degraded);
    assert!(incidents[0].failed_probes >= 3);

    tls.renew(90);
    let now = wait_for_state(&app, &token, url.id, UrlState::Up).await;
    assert!(
        (90.0..90.1).contains(&in_days(now.tls_not_after)),
        "{now:?}"
    );
    let incidents = app.incidents(&token, url.id).await;
    assert_eq!(
        incidents.len(),
        1,
        "one incident for the whole expiry: {incidents:?}"
    );
    assert!(incidents[0].resolved_at.is_some(), "{incidents:?}");
    assert!(incidents[0].failed_probes >= 5, "{incidents:?}");
    assert!(tls.hits("/ok") >= 7);
}

/// Without the extra root the test CA is not trusted: the probe fails its
/// handshake (TLS, DOWN). With it, the SSRF guard still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_roots_trust_a_ca_and_change_nothing_else() {
    let tls = TlsTarget::start(30).await;
    let app = spawn_app_with(Backend::Sqlite, prober_settings).await;
    let (_, token) = app.user().await;
    let url = add(&app, &token, &tls.url("/ok"), 60, vec![])
        .await
        .unwrap();
    let s = &first_statuses(&app, &token, url.id, 1).await[0];
    assert_eq!(s.error_kind(), ErrorKind::Tls, "{s:?}");
    assert_eq!(s.verdict(), UrlState::Down);
    assert_eq!(s.tls_not_after, None);

    let ca = tls.ca_pem.clone();
    let guarded = spawn_app_with(Backend::Sqlite, move |s| {
        prober_settings(s);
        s.prober.probe.extra_roots = vec![ca];
        s.prober.probe.allow_private_targets = false;
    })
    .await;
    let (_, token) = guarded.user().await;
    let url = add(&guarded, &token, &tls.url("/ok?guarded"), 60, vec![])
        .await
        .unwrap();
    let s = &first_statuses(&guarded, &token, url.id, 1).await[0];
    assert_eq!(s.error_kind(), ErrorKind::Blocked, "{s:?}");
    assert_eq!(tls.hits("/ok?guarded"), 0);
}

/// Every kind round-trips through AddUrl, GetUrl and ListUrls (the header
/// name lower-cased, the severity DOWN when unset); UpdateUrl replaces the
/// list with the mask `assertions`, and an empty list removes it.
async fn assertions_round_trip_and_update_url_replaces_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let all = vec![
        down(status(&["200-299", "301"])),
        degraded(max_latency(500)),
        down(Check::BodyContains("ok".into())),
        down(Check::BodyNotContains("error".into())),
        down(header("Content-Type", Expect::Contains("json".into()))),
        down(json_at("/checks/0", json!({"ok": true, "name": "db"}))),
        degraded(Check::TlsDaysLeft(14)),
    ];
    let added = add(&app, &token, "https://example.com/health", 60, all.clone())
        .await
        .unwrap();
    let mut want = all;
    for a in &mut want {
        if a.severity == Severity::Unspecified as i32 {
            a.severity = Severity::Down as i32;
        }
    }
    want[4] = down(header("content-type", Expect::Contains("json".into())));
    want[4].severity = Severity::Down as i32;
    assert_eq!(added.assertions, want);
    assert_eq!(app.get_url(&token, added.id).await.assertions, want);
    let listed = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.urls[0].assertions, want);

    let one = vec![degraded(Check::TlsDaysLeft(7))];
    let changed = update_assertions(&app, &token, added.id, one.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.assertions, one);
    assert_eq!(changed.name, added.name, "nothing else changed");
    let cleared = update_assertions(&app, &token, added.id, vec![])
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.assertions.is_empty());

    // Over JSON: the v1 routes take and give them in proto3 JSON.
    let auth = format!("Bearer {token}");
    let (code, body) = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com/json", "assertions": [
                {"status": {"codes": ["200-299"]}},
                {"severity": "ASSERTION_SEVERITY_DEGRADED", "maxLatency": "0.5s"},
                {"json": {"pointer": "/status", "value": "ok"}},
                {"header": {"name": "X-Version", "equals": "3"}}
            ]}),
            Some(&auth),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let got = &body["url"]["assertions"];
    assert_eq!(got[0]["status"]["codes"][0], "200-299", "{body}");
    assert_eq!(got[1]["severity"], "ASSERTION_SEVERITY_DEGRADED", "{body}");
    assert_eq!(got[2]["json"]["value"], "ok", "{body}");
    assert_eq!(got[3]["header"]["name"], "x-version", "{body}");
    let id = body["url"]["id"].as_str().unwrap().to_owned();
    let (code, body) = app
        .json(
            reqwest::Method::PATCH,
            &format!("/v1/urls/{id}?updateMask=assertions"),
            Some(json!({"assertions": [{"bodyContains": "ok"}]})),
            Some(&auth),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["assertions"],
        json!([{"severity": "ASSERTION_SEVERITY_DOWN", "bodyContains": "ok"}])
    );
}

/// Each rule of a bad assertion is INVALID_ARGUMENT naming the field path,
/// through the generated client and the JSON gateway (400), and nothing is
/// written: no URL is added, an updated URL keeps its assertions.
#[allow(clippy::too_many_lines)] // one case a rule
async fn bad_assertions_are_refused_naming_their_path_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let fine = || down(status(&["200-299"]));
    let kib = "x".repeat(1025);
    let cases: Vec<(&str, Vec<pb::Assertion>, &str)> = vec![
        (
            "https://example.com/",
            vec![fine(), fine(), down(json_at("status", json!("ok")))],
            "assertions[2].json.pointer",
        ),
        (
            "https://example.com/",
            vec![down(json_at("/a~2", json!("ok")))],
            "assertions[0].json.pointer",
        ),
        (
            "https://example.com/",
            vec![down(header("", Expect::Equals("x".into())))],
            "assertions[0].header.name",
        ),
        (
            "https://example.com/",
            vec![fine(), down(status(&["200", "500-200"]))],
            "assertions[1].status.codes[1]",
        ),
        (
            "https://example.com/",
            (0..21).map(|_| fine()).collect(),
            "assertions",
        ),
        (
            "https://example.com/",
            vec![down(Check::BodyContains(kib.clone()))],
            "assertions[0].body_contains",
        ),
        (
            "https://example.com/",
            vec![down(header("x", Expect::Equals(kib.clone())))],
            "assertions[0].header.equals",
        ),
        (
            "https://example.com/",
            vec![down(json_at("/a", json!(kib.clone())))],
            "assertions[0].json.value",
        ),
        (
            "https://example.com/",
            vec![down(Check::BodyNotContains(String::new()))],
            "assertions[0].body_not_contains",
        ),
        (
            "https://example.com/",
            vec![down(max_latency(0))],
            "assertions[0].max_latency",
        ),
        (
            "https://example.com/",
            vec![down(Check::TlsDaysLeft(0))],
            "assertions[0].tls_days_left",
        ),
        (
            "http://example.com/",
            vec![degraded(Check::TlsDaysLeft(14))],
            "assertions[0].tls_days_left",
        ),
        (
            "https://example.com/",
            vec![pb::Assertion::default()],
            "assertions[0]",
        ),
        (
            "https://example.com/",
            vec![pb::Assertion {
                severity: 9,
                check: Some(max_latency(10)),
            }],
            "assertions[0].severity",
        ),
        (
            "https://example.com/",
            vec![down(Check::Header(pb::HeaderAssertion {
                name: "x".into(),
                expect: None,
            }))],
            "assertions[0].header",
        ),
    ];
    for (url, assertions, field) in cases {
        let result = app
            .client
            .clone()
            .add_url(authed(
                pb::AddUrlRequest {
                    url: url.into(),
                    period: None,
                    assertions,
                },
                &token,
            ))
            .await;
        expect_invalid(result, field);
    }
    let listed = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.urls.is_empty(), "nothing added: {listed:?}");

    // UpdateUrl names the path inside `url`, and changes nothing.
    let url = add(&app, &token, "http://example.com/kept", 60, vec![fine()])
        .await
        .unwrap();
    expect_invalid(
        update_assertions(
            &app,
            &token,
            url.id,
            vec![fine(), down(json_at("x", json!(1)))],
        )
        .await,
        "url.assertions[1].json.pointer",
    );
    expect_invalid(
        update_assertions(&app, &token, url.id, vec![degraded(Check::TlsDaysLeft(3))]).await,
        "url.assertions[0].tls_days_left",
    );
    assert_eq!(app.get_url(&token, url.id).await.assertions, url.assertions);

    // The JSON gateway: 400 with the same field violation.
    let auth = format!("Bearer {token}");
    let (code, body) = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com/j", "assertions": [{"json": {"pointer": "a", "value": 1}}]}),
            Some(&auth),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("assertions[0].json.pointer:"),
        "{body}"
    );
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"], "assertions[0].json.pointer",
        "{body}"
    );
    let (code, body) = app
        .json(
            reqwest::Method::PATCH,
            &format!("/v1/urls/{}?updateMask=assertions", url.id),
            Some(json!({"assertions": [{"status": {"codes": ["500-200"]}}]})),
            Some(&auth),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"], "url.assertions[0].status.codes[0]",
        "{body}"
    );
    // Two checks in one assertion do not decode (a oneof): 400, never a 500.
    let (code, body) = app
        .post_json(
            "/v1/urls",
            json!({"url": "https://example.com/two", "assertions": [{"bodyContains": "a", "tlsDaysLeft": 3}]}),
            Some(&auth),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(app.get_url(&token, url.id).await.assertions, url.assertions);
}

crate::on_both_backends!(
    a_slow_answer_is_degraded_or_down_by_the_severity_of_its_assertion,
    body_header_and_json_mismatches_are_named_by_index,
    status_ranges_replace_the_default_rule,
    an_expiring_certificate_opens_one_incident_resolved_by_the_renewal,
    assertions_round_trip_and_update_url_replaces_them,
    bad_assertions_are_refused_naming_their_path_and_write_nothing,
);
