//! Slack, PagerDuty and email channels end to end: a real target's probes
//! open and resolve an incident, and the delivery worker sends it to a
//! real receiver over a real socket — an HTTP server here for Slack and
//! PagerDuty, a real SMTP server (aiosmtpd, tests/clients/smtp_sink.py) for
//! email. Also: what CreateChannel refuses of each kind, and what
//! ListChannels hides (the credentials in a Slack URL and a routing key),
//! and which channels hear of a DEGRADED incident.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{OriginalUri, State},
    http::StatusCode,
    routing::post,
};
use monitor::{
    deliver::SmtpUrl,
    proto::monitor::v1::{self as pb, UrlState, channel::Target as T},
};
use reqwest::StatusCode as HttpStatus;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::Code;

use crate::{
    assertions::{add, degraded, down, max_latency, update_assertions, wait_for_state},
    channels::{create_channel, list_channels, webhook},
    helpers::{
        Backend, TestApp, authed, expect_code, expect_invalid, prober_settings, spawn_app,
        spawn_app_with, tools_venv,
    },
    target::Target,
};

/// What a receiver got: each POST's path and JSON body.
type Got = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP receiver answering `status` to every POST and keeping the JSON
/// bodies it got, with their paths.
#[derive(Clone)]
struct JsonReceiver {
    addr: SocketAddr,
    got: Got,
}

impl JsonReceiver {
    async fn start(status: u16) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keep = got.clone();
        let app = Router::new()
            .fallback(post(
                move |State(got): State<Got>,
                      OriginalUri(uri): OriginalUri,
                      body: Bytes| async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    got.lock().unwrap().push((uri.path().to_owned(), body));
                    (
                        StatusCode::from_u16(status).unwrap(),
                        r#"{"status":"success","message":"Event processed"}"#,
                    )
                },
            ))
            .with_state(keep);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }
}

/// aiosmtpd on a free port, printing each accepted message as JSON.
struct SmtpSink {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl SmtpSink {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/smtp_sink.py");
        let mut child = Command::new(tools_venv().join("python"))
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the SMTP server (aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the SMTP server did not start");
        assert!(first.contains("listening"), "{first}");
        Self { child, port, lines }
    }

    fn url(&self) -> SmtpUrl {
        SmtpUrl::parse(&format!("smtp://127.0.0.1:{}", self.port)).unwrap()
    }

    /// The next `n` messages, each as the sink decoded it.
    fn messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(40);
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("message {} of {n} did not arrive", i + 1));
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn channel(name: &str, target: T) -> pb::Channel {
    pb::Channel {
        name: name.into(),
        target: Some(target),
        ..pb::Channel::default()
    }
}

fn slack(url: &str) -> T {
    T::Slack(pb::SlackTarget {
        webhook_url: url.into(),
    })
}

fn pagerduty(key: &str, events_url: &str) -> T {
    T::Pagerduty(pb::PagerDutyTarget {
        routing_key: key.into(),
        events_url: events_url.into(),
    })
}

fn email(to: &str) -> T {
    T::Email(pb::EmailTarget { to: to.into() })
}

fn notifying(s: &mut monitor::config::Settings) {
    prober_settings(s);
    s.delivery.interval = Duration::from_millis(100);
    s.delivery.timeout = Duration::from_secs(2);
}

/// The channel's deliveries once `n` are there and none is pending,
/// oldest first.
async fn settled(app: &TestApp, token: &str, channel_id: i64, n: usize) -> Vec<pb::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut got = app
            .client
            .clone()
            .list_deliveries(authed(
                pb::ListDeliveriesRequest {
                    channel_id,
                    page_size: 100,
                    page_token: String::new(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        got.reverse();
        let pending = pb::DeliveryState::Pending as i32;
        if got.len() >= n && got.iter().all(|d| d.state != pending) {
            return got;
        }
        assert!(Instant::now() < deadline, "not settled in 40 s: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A user whose URL (probed every second) answers `pattern` and whose
/// channel `target` hears of it: (token, url, channel id).
async fn watched(app: &TestApp, target: &Target, pattern: &str, to: T) -> (String, pb::Url, i64) {
    let (_, token) = app.user().await;
    let channel = create_channel(app, &token, channel("ops", to))
        .await
        .expect("create channel")
        .into_inner();
    let url = app
        .add_url_every(&token, &target.url(&format!("/seq/{pattern}")), 1)
        .await;
    (token, url, channel.id)
}

fn delivered(deliveries: &[pb::Delivery]) -> Vec<&str> {
    let ok = pb::DeliveryState::Delivered as i32;
    deliveries
        .iter()
        .map(|d| {
            assert_eq!(d.state, ok, "{d:?}");
            d.event.as_str()
        })
        .collect()
}

async fn slack_gets_which_url_what_state_since_when_and_why(backend: Backend) {
    let target = Target::start().await;
    let receiver = JsonReceiver::start(200).await;
    let app = spawn_app_with(backend, notifying).await;
    let hook = receiver.url("/services/T000/B000/XXXXSECRET");
    let (token, url, channel_id) = watched(&app, &target, "++---+", slack(&hook)).await;
    let rows = settled(&app, &token, channel_id, 2).await;
    assert_eq!(delivered(&rows), ["incident.opened", "incident.resolved"]);
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter()
            .all(|(path, _)| path == "/services/T000/B000/XXXXSECRET")
    );
    let incident = &app.incidents(&token, url.id).await[0];
    let opened_at = chrono::DateTime::from_timestamp(incident.opened_at.unwrap().seconds, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();

    let (_, opened) = &got[0];
    let text = opened["text"].as_str().unwrap();
    for part in ["DOWN", url.url.as_str(), opened_at.as_str(), "HTTP 500"] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
    let blocks = opened["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        format!("DOWN: {}", url.name),
        "{blocks:?}"
    );
    let fields: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["fields"].as_array())
        .flatten()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"*State*\nDOWN"), "{fields:?}");
    assert!(
        fields.contains(&format!("*Since*\n{opened_at}").as_str()),
        "{fields:?}"
    );
    assert!(fields.contains(&"*First failure*\nHTTP 500"), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains(&url.url)), "{fields:?}");

    let (_, resolved) = &got[1];
    let text = resolved["text"].as_str().unwrap();
    assert!(
        text.contains("RESOLVED") && text.contains("UP again"),
        "{text}"
    );
    assert_eq!(
        resolved["blocks"][0]["text"]["text"],
        format!("RESOLVED: {}", url.name)
    );
}

async fn pagerduty_triggers_then_resolves_with_the_incident_id_as_dedup_key(backend: Backend) {
    let target = Target::start().await;
    let receiver = JsonReceiver::start(202).await;
    let app = spawn_app_with(backend, notifying).await;
    let key = "R0123456789ABCDEF0123456789abcdef";
    let to = pagerduty(key, &receiver.url("/v2/enqueue"));
    let (token, url, channel_id) = watched(&app, &target, "++---+", to).await;
    let rows = settled(&app, &token, channel_id, 2).await;
    assert_eq!(delivered(&rows), ["incident.opened", "incident.resolved"]);
    let incident = &app.incidents(&token, url.id).await[0];
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    let (path, trigger) = &got[0];
    assert_eq!(path, "/v2/enqueue");
    assert_eq!(trigger["routing_key"], key);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], incident.id.to_string());
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], url.url);
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("DOWN: ")
    );
    assert!(trigger["payload"]["timestamp"].is_string());
    assert_eq!(
        got[1].1,
        json!({"routing_key": key, "event_action": "resolve", "dedup_key": incident.id.to_string()})
    );
}

async fn email_goes_through_a_real_smtp_server_in_text_and_html(backend: Backend) {
    let sink = SmtpSink::start();
    let target = Target::start().await;
    let smtp = sink.url();
    let app = spawn_app_with(backend, |s| {
        notifying(s);
        s.delivery.smtp_url = Some(smtp);
        s.delivery.smtp_from = "Monitor <alerts@monitor.test>".parse().unwrap();
    })
    .await;
    let (token, url, channel_id) =
        watched(&app, &target, "++---+", email("oncall@example.com")).await;
    let rows = settled(&app, &token, channel_id, 2).await;
    assert_eq!(delivered(&rows), ["incident.opened", "incident.resolved"]);
    let mails = sink.messages(2);
    let (opened, resolved) = (&mails[0], &mails[1]);
    assert_eq!(opened["rcpt_tos"], json!(["oncall@example.com"]));
    assert_eq!(opened["mail_from"], "alerts@monitor.test");
    assert_eq!(opened["to"], "oncall@example.com");
    assert_eq!(opened["subject"], format!("[monitor] DOWN: {}", url.name));
    assert_eq!(
        resolved["subject"],
        format!("[monitor] RESOLVED: {}", url.name)
    );
    let text = opened["text"].as_str().unwrap();
    assert!(
        text.contains(&url.url) && text.contains("HTTP 500"),
        "{text}"
    );
    let html = opened["html"].as_str().unwrap();
    assert!(
        html.contains("<h2>DOWN: ") && html.contains("HTTP 500"),
        "{html}"
    );
    assert_eq!(
        opened["message_id"],
        format!("<delivery-{}@monitor.test>", rows[0].id)
    );

    // A recipient the server refuses for good is given up at once.
    let refused = create_channel(&app, &token, channel("nobody", email("reject@example.com")))
        .await
        .unwrap()
        .into_inner();
    let sent = app
        .client
        .clone()
        .test_channel(authed(pb::TestChannelRequest { id: refused.id }, &token))
        .await
        .unwrap()
        .into_inner();
    let rows = settled(&app, &token, refused.id, 1).await;
    assert_eq!(rows[0].id, sent.id);
    assert_eq!(rows[0].state, pb::DeliveryState::GaveUp as i32, "{rows:?}");
    assert_eq!(rows[0].attempts, 1);
    assert!(
        rows[0].last_error.contains("550"),
        "{:?}",
        rows[0].last_error
    );
}

async fn an_email_channel_without_smtp_is_a_failed_precondition(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let err = create_channel(&app, &token, channel("mail", email("oncall@example.com")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("MONITOR_SMTP_URL"),
        "{}",
        err.message()
    );
    let (status, body) = app
        .post_json(
            "/v1/channels",
            json!({"name": "mail", "email": {"to": "oncall@example.com"}}),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(status, HttpStatus::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], Code::FailedPrecondition as i32, "{body}");
    assert!(list_channels(&app, &token).await.is_empty());
}

async fn every_kind_is_refused_by_field_and_listed_with_its_credentials_masked(backend: Backend) {
    let receiver = JsonReceiver::start(200).await;
    let sink_url = SmtpUrl::parse("smtp://127.0.0.1:1").unwrap();
    let app = spawn_app_with(backend, |s| {
        s.prober.probe.allow_private_targets = true;
        s.delivery.smtp_url = Some(sink_url);
    })
    .await;
    let (_, token) = app.user().await;
    let hook = receiver.url("/services/T0/B0/SECRETPATH");
    let key = "R0123456789ABCDEF0123456789abcdef";
    let cases = [
        (slack("ftp://hooks.invalid/x"), "channel.slack.webhook_url"),
        (slack(""), "channel.slack.webhook_url"),
        (email("not an address"), "channel.email.to"),
        (email(""), "channel.email.to"),
        (pagerduty("", ""), "channel.pagerduty.routing_key"),
        (
            pagerduty("has spaces in it", ""),
            "channel.pagerduty.routing_key",
        ),
        (
            pagerduty(key, "gopher://x.invalid/"),
            "channel.pagerduty.events_url",
        ),
    ];
    for (target, field) in cases {
        let err = create_channel(&app, &token, channel("bad", target.clone())).await;
        expect_invalid(err, field);
    }
    assert!(
        list_channels(&app, &token).await.is_empty(),
        "nothing added"
    );

    let created_slack = create_channel(&app, &token, channel("slack", slack(&hook)))
        .await
        .unwrap()
        .into_inner();
    let created_pd = create_channel(&app, &token, channel("pd", pagerduty(key, "")))
        .await
        .unwrap()
        .into_inner();
    let created_mail = create_channel(&app, &token, channel("mail", email(" OnCall@Example.com ")))
        .await
        .unwrap()
        .into_inner();
    // Created: in full, the default events URL filled in.
    assert_eq!(created_slack.target, Some(slack(&hook)));
    assert_eq!(
        created_pd.target,
        Some(pagerduty(key, "https://events.pagerduty.com/v2/enqueue"))
    );
    assert_eq!(created_mail.target, Some(email("oncall@example.com")));
    // Listed: the Slack path and the routing key hidden.
    let listed = list_channels(&app, &token).await;
    let targets: Vec<_> = listed.iter().map(|c| c.target.clone().unwrap()).collect();
    assert_eq!(
        targets,
        [
            slack(&format!("http://{}/…", receiver.addr)),
            pagerduty("…cdef", "https://events.pagerduty.com/v2/enqueue"),
            email("oncall@example.com"),
        ]
    );
    let (status, body) = app
        .get_json("/v1/channels", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(status, HttpStatus::OK);
    let text = body.to_string();
    assert!(
        !text.contains("SECRETPATH") && !text.contains(key),
        "{text}"
    );
    assert_eq!(body["channels"][1]["pagerduty"]["routingKey"], "…cdef");
}

async fn a_private_slack_or_pagerduty_address_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.prober.probe.allow_private_targets = false).await;
    let (_, token) = app.user().await;
    let err = create_channel(
        &app,
        &token,
        channel("s", slack("http://127.0.0.1:9/services/x")),
    )
    .await;
    expect_invalid(err, "channel.slack.webhook_url");
    let err = create_channel(
        &app,
        &token,
        channel("p", pagerduty("abc", "http://10.0.0.1/v2/enqueue")),
    )
    .await;
    expect_invalid(err, "channel.pagerduty.events_url");
    assert!(list_channels(&app, &token).await.is_empty());
    expect_code(
        create_channel(&app, &token, channel("m", email("a@example.com"))).await,
        Code::FailedPrecondition,
    );
}

/// A DEGRADED incident goes only to channels with `notify_degraded`; when
/// it turns DOWN, every channel hears of it once, in state DOWN.
async fn degraded_incidents_reach_only_channels_that_ask_and_down_reaches_all(backend: Backend) {
    let target = Target::start().await;
    let (all, down_only) = (
        JsonReceiver::start(200).await,
        JsonReceiver::start(200).await,
    );
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let mut every = webhook("every", &all.url("/all"));
    every.notify_degraded = true;
    create_channel(&app, &token, every).await.unwrap();
    create_channel(&app, &token, webhook("down", &down_only.url("/down")))
        .await
        .unwrap();
    let url = add(
        &app,
        &token,
        &target.url("/hold?escalates"),
        1,
        vec![degraded(max_latency(100))],
    )
    .await
    .unwrap();
    wait_for_state(&app, &token, url.id, UrlState::Degraded).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while all.got().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the DEGRADED incident was not sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, first) = &all.got()[0];
    assert_eq!(first["type"], "incident.opened");
    assert_eq!(first["data"]["incident"]["state"], "DEGRADED");
    // A few passes later, still nothing for the DOWN-only channel.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(down_only.got().is_empty(), "{:?}", down_only.got());

    // The same slowness made a DOWN assertion: the URL turns DOWN.
    update_assertions(&app, &token, url.id, vec![down(max_latency(100))])
        .await
        .unwrap();
    wait_for_state(&app, &token, url.id, UrlState::Down).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while down_only.got().is_empty() {
        assert!(Instant::now() < deadline, "the DOWN incident was not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = down_only.got();
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert_eq!(got[0].1["type"], "incident.opened");
    assert_eq!(got[0].1["data"]["incident"]["state"], "DOWN");
    // The channel told of the DEGRADED incident is told it is DOWN now:
    // the same incident, opened again in state DOWN; then nothing more.
    let deadline = Instant::now() + Duration::from_secs(20);
    while all.got().len() < 2 {
        assert!(Instant::now() < deadline, "the escalation was not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let states: Vec<(Value, Value, Value)> = all
        .got()
        .iter()
        .map(|(_, b)| {
            let incident = &b["data"]["incident"];
            (
                b["type"].clone(),
                incident["id"].clone(),
                incident["state"].clone(),
            )
        })
        .collect();
    let id = got[0].1["data"]["incident"]["id"].clone();
    assert_eq!(
        states,
        [
            (json!("incident.opened"), id.clone(), json!("DEGRADED")),
            (json!("incident.opened"), id, json!("DOWN")),
        ]
    );

    // Resolved: each channel is told once, however many opened events it had.
    update_assertions(&app, &token, url.id, Vec::new())
        .await
        .unwrap();
    wait_for_state(&app, &token, url.id, UrlState::Up).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while all.got().len() < 3 || down_only.got().len() < 2 {
        assert!(Instant::now() < deadline, "the resolution was not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for receiver in [&all, &down_only] {
        let resolved = receiver
            .got()
            .iter()
            .filter(|(_, b)| b["type"] == "incident.resolved")
            .count();
        assert_eq!(resolved, 1, "{:?}", receiver.got());
    }
}

/// A name that resolves to a private address passes CreateChannel's
/// literal check and is refused at every send, after DNS, for every kind
/// that sends over HTTP: nothing reaches the receiver, and the delivery's
/// last error says why.
async fn a_name_resolving_to_a_private_address_is_blocked_at_send_time(backend: Backend) {
    let receiver = JsonReceiver::start(200).await;
    let app = spawn_app_with(backend, |s| {
        s.prober.probe.allow_private_targets = false;
        s.delivery.interval = Duration::from_millis(100);
    })
    .await;
    let (_, token) = app.user().await;
    let port = receiver.addr.port();
    let at = |path: &str| format!("http://localhost:{port}{path}");
    let targets = [
        T::Webhook(pb::WebhookTarget {
            url: at("/hook"),
            secret: String::new(),
        }),
        slack(&at("/services/T0/B0/X")),
        pagerduty("abc123", &at("/v2/enqueue")),
    ];
    for target in targets {
        let created = create_channel(&app, &token, channel("local", target))
            .await
            .expect("a name passes the literal check")
            .into_inner();
        app.client
            .clone()
            .test_channel(authed(pb::TestChannelRequest { id: created.id }, &token))
            .await
            .unwrap();
        // Generous: one attempt, but under a loaded full run.
        let deadline = Instant::now() + Duration::from_secs(60);
        let delivery = loop {
            let got = app
                .client
                .clone()
                .list_deliveries(authed(
                    pb::ListDeliveriesRequest {
                        channel_id: created.id,
                        page_size: 1,
                        page_token: String::new(),
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .deliveries;
            // Attempts count up when a send is claimed; its error is
            // written when the attempt ends.
            if got[0].attempts >= 1 && !got[0].last_error.is_empty() {
                break got[0].clone();
            }
            assert!(Instant::now() < deadline, "never tried: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(delivery.state(), pb::DeliveryState::Pending, "{delivery:?}");
        assert!(
            delivery.last_error.contains("private or reserved address"),
            "{delivery:?}"
        );
    }
    assert!(receiver.got().is_empty(), "{:?}", receiver.got());
}

/// A channel created while an incident is open hears nothing of it, not
/// even its resolution; it hears the next incident whole.
async fn a_channel_created_during_an_incident_gets_only_later_events(backend: Backend) {
    let target = Target::start().await;
    let receiver = JsonReceiver::start(200).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let url = app
        .add_url_every(&token, &target.url("/seq/---------++++++-----+"), 1)
        .await;
    wait_for_state(&app, &token, url.id, UrlState::Down).await;
    create_channel(&app, &token, webhook("late", &receiver.url("/hook")))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let incidents = app.incidents(&token, url.id).await;
        if incidents.len() == 2 && incidents.iter().all(|i| i.resolved_at.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "{incidents:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = app.incidents(&token, url.id).await[0].id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.got().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", receiver.got());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got: Vec<(Value, Value)> = receiver
        .got()
        .iter()
        .map(|(_, b)| (b["type"].clone(), b["data"]["incident"]["id"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("incident.opened"), json!(second)),
            (json!("incident.resolved"), json!(second)),
        ]
    );
}

crate::on_both_backends!(
    a_channel_created_during_an_incident_gets_only_later_events,
    a_name_resolving_to_a_private_address_is_blocked_at_send_time,
    degraded_incidents_reach_only_channels_that_ask_and_down_reaches_all,
    slack_gets_which_url_what_state_since_when_and_why,
    pagerduty_triggers_then_resolves_with_the_incident_id_as_dedup_key,
    email_goes_through_a_real_smtp_server_in_text_and_html,
    an_email_channel_without_smtp_is_a_failed_precondition,
    every_kind_is_refused_by_field_and_listed_with_its_credentials_masked,
    a_private_slack_or_pagerduty_address_is_refused,
);

/// The real binary at `RUST_LOG=debug`: channels of every kind are
/// created, listed, tested against receivers that refuse (410), retry
/// (503) or are not there, and given up; its whole log holds no webhook
/// secret, no Slack webhook path, no routing key and no SMTP password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let gone = JsonReceiver::start(410).await;
    let busy = JsonReceiver::start(503).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::binary::monitor_command(dir.path());
    cmd.env("RUST_LOG", "debug")
        .env("MONITOR_ALLOW_PRIVATE_TARGETS", "true")
        .env("MONITOR_DELIVERY_INTERVAL", "100ms")
        .env("MONITOR_DELIVERY_TIMEOUT", "1s")
        .env("MONITOR_SMTP_URL", "smtp://mailer:SMTPPASSWORD@127.0.0.1:1");
    let mut server = crate::binary::Running::start(cmd);
    let mut client = server
        .registered_client("secrets@example.com", "correct horse battery")
        .await;
    let token = client
        .login(pb::LoginRequest {
            email: "secrets@example.com".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let key = "RKEYSECRET0123456789abcdefABCDEF";
    let targets = [
        T::Webhook(pb::WebhookTarget {
            url: gone.url("/hook"),
            secret: String::new(),
        }),
        slack(&busy.url("/services/T0/B0/SLACKPATHSECRET")),
        pagerduty(key, &gone.url("/v2/enqueue")),
        email("oncall@example.com"),
    ];
    let mut secrets = vec![
        key.to_owned(),
        "SLACKPATHSECRET".to_owned(),
        "SMTPPASSWORD".to_owned(),
    ];
    let mut ids = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let created = client
            .create_channel(authed(
                pb::CreateChannelRequest {
                    channel: Some(channel(&format!("c{i}"), target)),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        if let Some(T::Webhook(w)) = &created.target {
            secrets.push(w.secret.clone());
            // Its bytes too, in the base64 a careless log would print.
            secrets.push(w.secret["whsec_".len()..].to_owned());
        }
        ids.push(created.id);
    }
    client
        .list_channels(authed(pb::ListChannelsRequest {}, &token))
        .await
        .unwrap();
    for id in &ids {
        client
            .test_channel(authed(pb::TestChannelRequest { id: *id }, &token))
            .await
            .unwrap();
    }
    // Every kind tried at least once (the 503 one and the email more).
    let deadline = Instant::now() + Duration::from_secs(20);
    while gone.got().len() < 2 || busy.got().len() < 2 {
        assert!(Instant::now() < deadline, "not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, log) = server.stop().await;
    assert!(
        log.iter().any(|l| l.contains("notification given up")),
        "the 410s were logged as given up"
    );
    assert!(
        log.iter().any(|l| l.contains("\"DEBUG\"")),
        "logged at debug level"
    );
    for line in &log {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
}
