//! WatchEvents over gRPC and Server-Sent Events: a user's statuses as their
//! probes end (from a real prober and target, and results pushed to the
//! app's buffer), only their own; resuming after a dropped stream loses
//! none and repeats none; tokens too old, from another run, or malformed;
//! bookmarks on an idle stream; a consumer that does not read is cut off;
//! the watchers-per-user limit.

use std::time::Duration;

use chrono::Utc;
use monitor::{
    domain::ProbeResult,
    proto::monitor::v1::{self as pb, event::Kind},
};
use tonic::{Code, Streaming};

use crate::{
    helpers::{Backend, TestApp, authed, prober_settings, spawn_app, spawn_app_with, use_redis},
    target::Target,
};

async fn watch(
    app: &TestApp,
    token: &str,
    url_id: i64,
    resume_token: &str,
) -> Result<Streaming<pb::Event>, tonic::Status> {
    app.client
        .clone()
        .watch_events(authed(
            pb::WatchEventsRequest {
                url_id,
                resume_token: resume_token.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The next event, within 10 s.
async fn next(stream: &mut Streaming<pb::Event>) -> Result<pb::Event, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .map(|e| e.expect("the stream went on"))
}

/// The next status event (bookmarks skipped).
async fn next_status(stream: &mut Streaming<pb::Event>) -> (String, pb::Status) {
    loop {
        let event = next(stream).await.expect("an event");
        if let Some(Kind::Status(status)) = event.kind {
            return (event.resume_token, status);
        }
    }
}

/// A result of `url_id` due `n` seconds after a fixed start, pushed to
/// the app's buffer as the prober would.
async fn push(app: &TestApp, url_id: i64, n: i64) {
    let due = chrono::DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap();
    app.buffer
        .push(ProbeResult::new(
            url_id,
            due,
            Utc::now(),
            200,
            Duration::from_millis(5),
            None,
        ))
        .await;
}

/// A result of `url_id`, 200 in 5 ms, due and started now.
fn ok_now(url_id: i64) -> ProbeResult {
    ProbeResult::new(
        url_id,
        Utc::now(),
        Utc::now(),
        200,
        Duration::from_millis(5),
        None,
    )
}

fn due_seconds(status: &pb::Status) -> i64 {
    status.due_at.unwrap().seconds - 1_800_000_000
}

async fn statuses_of_the_callers_urls_stream_as_they_are_probed(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, alice) = app.user().await;
    let (_, bob) = app.user().await;
    let mut all = watch(&app, &alice, 0, "").await.unwrap();
    let mine = app.add_url_every(&alice, &target.url("/ok"), 1).await;
    let other = app.add_url_every(&bob, &target.url("/fail"), 1).await;
    let mut one = watch(&app, &alice, mine.id, "").await.unwrap();
    let mut bobs = watch(&app, &bob, other.id, "").await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (token, status) = next_status(&mut all).await;
        assert_eq!(
            (status.url_id, status.status_code, status.id),
            (mine.id, 200, 0)
        );
        assert!(status.due_at.is_some() && status.probed_at.is_some());
        tokens.push(token);
        let (_, status) = next_status(&mut one).await;
        assert_eq!(status.url_id, mine.id);
        let (_, status) = next_status(&mut bobs).await;
        assert_eq!((status.url_id, status.status_code), (other.id, 500));
    }
    let mut sorted = tokens.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "a token per event: {tokens:?}");
    // Another user's URL is not found, as everywhere.
    let err = watch(&app, &alice, other.id, "").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = watch(&app, &alice, -1, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

/// State changes and incidents, each once its flush committed, in order
/// with the statuses that caused them.
async fn state_changes_and_incidents_stream_after_their_flush(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let mut stream = watch(&app, &token, 0, "").await.unwrap();
    let url = app
        .add_url_every(&token, &target.url("/seq/++---++"), 1)
        .await;
    let mut seen = Vec::new();
    let mut incident_id = 0;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), next(&mut stream))
            .await
            .expect("the incident resolved within 30 s")
            .unwrap();
        match event.kind {
            Some(Kind::StateChange(c)) => {
                assert_eq!(c.url_id, url.id);
                assert!(c.at.is_some());
                seen.push(format!("{:?}->{:?}", c.from(), c.to()));
            }
            Some(Kind::Incident(i)) => {
                assert_eq!(i.url_id, url.id);
                assert_eq!(i.state(), pb::UrlState::Down);
                assert_eq!(i.first_failure.as_ref().unwrap().status_code, 500);
                if incident_id == 0 {
                    incident_id = i.id;
                }
                assert_eq!(i.id, incident_id, "one incident");
                let resolved = i.resolved_at.is_some();
                seen.push(if resolved { "resolved" } else { "opened" }.to_owned());
                if resolved {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        ["Pending->Up", "Up->Down", "opened", "Down->Up", "resolved"],
        "{seen:?}"
    );
}

async fn a_resumed_stream_loses_none_and_repeats_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut first = watch(&app, &token, 0, "").await.unwrap();
    for n in 1..=5 {
        push(&app, url.id, n).await;
    }
    let mut last = String::new();
    for n in 1..=2 {
        let (resume, status) = next_status(&mut first).await;
        assert_eq!(due_seconds(&status), n);
        last = resume;
    }
    drop(first);
    push(&app, url.id, 6).await;
    let mut again = watch(&app, &token, url.id, &last).await.unwrap();
    let mut seen = Vec::new();
    for _ in 3..=6 {
        seen.push(due_seconds(&next_status(&mut again).await.1));
    }
    assert_eq!(seen, [3, 4, 5, 6]);
    push(&app, url.id, 7).await;
    assert_eq!(due_seconds(&next_status(&mut again).await.1), 7);
}

async fn old_foreign_and_malformed_tokens_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.events.events_retained = 100).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut stream = watch(&app, &token, 0, "").await.unwrap();
    push(&app, url.id, 1).await;
    let (oldest, _) = next_status(&mut stream).await;
    // Still kept: resumes.
    watch(&app, &token, 0, &oldest).await.unwrap();
    for n in 2..=150 {
        push(&app, url.id, n).await;
    }
    let err = watch(&app, &token, 0, &oldest).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("watch again"), "{}", err.message());
    // A token of another run of the server (another epoch).
    let (epoch, seq) = oldest.split_once('.').unwrap();
    let other_epoch = format!("{:08x}", u32::from_str_radix(epoch, 16).unwrap() ^ 1);
    let err = watch(&app, &token, 0, &format!("{other_epoch}.{seq}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    for bad in ["nonsense", "1", "zz.1"] {
        let err = watch(&app, &token, 0, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().starts_with("resume_token:"), "{err:?}");
    }
}

async fn an_idle_stream_gets_bookmarks_it_can_resume_from(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.events.watch_bookmark = Duration::from_millis(200);
    })
    .await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut stream = watch(&app, &token, 0, "").await.unwrap();
    let event = next(&mut stream).await.unwrap();
    assert!(matches!(event.kind, Some(Kind::Bookmark(_))), "{event:?}");
    assert!(!event.resume_token.is_empty());
    drop(stream);
    push(&app, url.id, 1).await;
    let mut resumed = watch(&app, &token, 0, &event.resume_token).await.unwrap();
    assert_eq!(due_seconds(&next_status(&mut resumed).await.1), 1);
}

async fn a_consumer_that_does_not_read_is_cut_off(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.events.watch_queue = 4).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let mut stream = watch(&app, &token, url.id, "").await.unwrap();
    // Far more than the queue and the connection's windows hold.
    for n in 0..20_000 {
        push(&app, url.id, n).await;
    }
    let mut got = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("ended without an error after {got} events"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    assert!(end.message().contains("resume_token"), "{}", end.message());
    assert!(got < 20_000, "{got}");
    // Its place is given back: a new watcher may start.
    watch(&app, &token, url.id, "").await.unwrap();
}

async fn watchers_per_user_are_limited(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.events.watchers_per_user = 2).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let first = watch(&app, &token, 0, "").await.unwrap();
    let _second = watch(&app, &token, 0, "").await.unwrap();
    let err = watch(&app, &token, 0, "").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Per user: another user is not counted with them.
    watch(&app, &other, 0, "").await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while watch(&app, &token, 0, "").await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /v1/events`: an event stream a browser's EventSource reads.
async fn events_over_server_sent_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/a").await;
    let http = reqwest::Client::new();
    let open = |last: Option<String>| {
        let mut req = http
            .get(app.http_url(&format!("/v1/events?urlId={}", url.id)))
            .bearer_auth(&token);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        req.send()
    };
    let response = open(None).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response;
    push(&app, url.id, 1).await;
    let mut text = String::new();
    let first = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(end) = text.find("\n\n") {
            break text[..end].to_owned();
        }
    };
    let field = |name: &str| {
        first
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map_or_else(|| panic!("no {name} in {first:?}"), |v| v.trim().to_owned())
    };
    assert_eq!(field("event"), "status");
    let data: serde_json::Value = serde_json::from_str(&field("data")).unwrap();
    assert_eq!(data["status"]["urlId"], url.id.to_string());
    assert_eq!(data["resumeToken"], field("id"));
    drop(body);

    // Reconnecting with Last-Event-ID resumes after it.
    push(&app, url.id, 2).await;
    let response = open(Some(field("id"))).await.unwrap();
    let mut body = response;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"dueAt\":\"2027-01-15T08:00:02"), "{text}");

    // Errors before the stream are the gateway's JSON errors.
    let (status, body) = app.get_json("/v1/events", None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{body}");
    let auth = format!("Bearer {token}");
    let (status, body) = app
        .get_json("/v1/events?resume_token=nonsense", Some(&auth))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.get_json("/v1/events?color=red", Some(&auth)).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
}

/// A watcher that begins while the shared stream is idle keeps its place
/// through reads that wait their whole second for nothing (a null reply
/// from Redis, once refused as a failed read: at start-up the ring was
/// filled again and the watcher told its place was gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_an_idle_redis_stream_keeps_its_place() {
    if crate::helpers::postgres_skipped() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, use_redis).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/idle").await;
    let mut watching = watch(&app, &token, 0, "").await.unwrap();
    // Longer than two blocking reads.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    push(&app, url.id, 1).await;
    let (_, status) = next_status(&mut watching).await;
    assert_eq!((status.url_id, due_seconds(&status)), (url.id, 1));
}

/// Two instances on one Postgres and one Redis: a watcher on one sees the
/// results pushed on the other, and its resume token is good on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_instance_sees_probes_of_another_and_resumes_on_either() {
    if crate::helpers::postgres_skipped() {
        return;
    }
    let a = spawn_app_with(Backend::Postgres, |s| {
        use_redis(s);
        s.events.events_retained = 100;
    })
    .await;
    let b = a.sibling(|_| {}).await;
    let (_, token) = a.user().await;
    let url = a.add_url(&token, "https://example.com/a").await;
    let mut on_b = watch(&b, &token, 0, "").await.unwrap();
    // B's feed reads from where the stream was when it began: give its
    // first read a moment, then push on A.
    tokio::time::sleep(Duration::from_millis(300)).await;
    push(&a, url.id, 1).await;
    push(&a, url.id, 2).await;
    let (first, status) = next_status(&mut on_b).await;
    assert_eq!((status.url_id, due_seconds(&status)), (url.id, 1));
    assert!(first.contains('-'), "a Redis entry id: {first}");
    drop(on_b);
    push(&b, url.id, 3).await;
    // B's token on A: the events after it, from both instances' probes.
    let mut on_a = watch(&a, &token, url.id, &first).await.unwrap();
    assert_eq!(due_seconds(&next_status(&mut on_a).await.1), 2);
    assert_eq!(due_seconds(&next_status(&mut on_a).await.1), 3);
    // Past the retained window, on either instance.
    for n in 4..=300 {
        push(&a, url.id, n).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for app in [&a, &b] {
        loop {
            if let Err(err) = watch(app, &token, 0, &first).await {
                assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never out of range");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// With Redis, a watcher on one instance hears of the state changes and
/// incidents another instance's probes caused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_and_incidents_reach_watchers_on_other_instances() {
    if crate::helpers::postgres_skipped() {
        return;
    }
    let target = Target::start().await;
    let a = spawn_app_with(Backend::Postgres, |s| {
        use_redis(s);
        prober_settings(s);
    })
    .await;
    let b = a.sibling(|s| s.prober.enabled = false).await;
    let (_, token) = a.user().await;
    let mut on_b = watch(&b, &token, 0, "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = a.add_url_every(&token, &target.url("/seq/---"), 1).await;
    let mut seen = Vec::new();
    while !seen.contains(&"opened".to_owned()) {
        let event = tokio::time::timeout(Duration::from_secs(30), next(&mut on_b))
            .await
            .expect("opened within 30 s")
            .unwrap();
        match event.kind {
            Some(Kind::StateChange(c)) => {
                assert_eq!(c.url_id, url.id);
                seen.push(format!("{:?}->{:?}", c.from(), c.to()));
            }
            Some(Kind::Incident(i)) => {
                assert_eq!((i.url_id, i.resolved_at), (url.id, None));
                seen.push("opened".to_owned());
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["Pending->Down", "opened"]);
}

/// The feed's blocking `XREAD` has a connection of its own: a publish
/// does not wait for it to end. On one shared connection fred held every
/// publish until the read returned (up to its `BLOCK`), and a flush that
/// published a batch's notices one by one stalled for a second each (at
/// 3,000 URLs no flush finished in 20 s). The read here blocks for 60 s:
/// a publish that waited behind it misses the 20 s allowed, one that did
/// not is in the ring at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_does_not_wait_for_the_feeds_blocking_read() {
    use std::sync::Arc;

    use monitor::live::{Hub, Key, LiveEvent, redis::RedisFeed};
    use tokio_util::sync::CancellationToken;

    if crate::helpers::postgres_skipped() {
        return;
    }
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let feed = Arc::new(
        RedisFeed::connect(&crate::helpers::test_redis_url(), &prefix, 100)
            .unwrap()
            .block_for(Duration::from_secs(60)),
    );
    let status = |url_id| LiveEvent::Status(Arc::new(ok_now(url_id)));
    let hub = Arc::new(Hub::shared(100));
    let mut seen = hub.subscribe();
    let shutdown = CancellationToken::new();
    let reading = tokio::spawn(feed.clone().run(hub.clone(), shutdown.clone()));
    for n in 1..=3 {
        // Time for the reader to be blocked again (it is, in a few ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(20), feed.publish(status(n)))
            .await
            .expect("published without waiting for the blocking read");
        // The entry wakes the reader: it reaches the ring.
        tokio::time::timeout(Duration::from_secs(20), async {
            while !hub
                .after(Key::default(), 10)
                .unwrap()
                .iter()
                .any(|(_, e)| e.url_id() == n)
            {
                seen.changed().await.unwrap();
            }
        })
        .await
        .expect("the reader took the entry");
    }
    // A batch of notices in one pipeline, in order.
    let events: Vec<LiveEvent> = (10..20).map(status).collect();
    tokio::time::timeout(Duration::from_secs(20), feed.publish_all(events))
        .await
        .expect("published without waiting for the blocking read");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ids: Vec<i64> = hub
                .after(Key::default(), 100)
                .unwrap()
                .iter()
                .map(|(_, e)| e.url_id())
                .collect();
            if ids.len() == 13 {
                assert_eq!(ids, [1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
                break;
            }
            seen.changed().await.unwrap();
        }
    })
    .await
    .expect("the reader took the batch");
    shutdown.cancel();
    reading.await.unwrap();
}

/// Events published at once go packed, many to a stream entry, and keep
/// everything the one-event entries had: each event has a key of its own
/// (a token pointing inside an entry resumes after exactly that event), an
/// instance starting later fills its ring with every event in order, the
/// old one-event entries among them, and reads on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_events_have_keys_of_their_own_and_fill_a_later_instance() {
    use std::sync::Arc;

    use monitor::live::{Hub, Key, LiveEvent, redis::RedisFeed};
    use tokio_util::sync::CancellationToken;

    if crate::helpers::postgres_skipped() {
        return;
    }
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let stream = format!("{prefix}:events");
    let redis = crate::helpers::test_redis_url();
    // An entry an older instance wrote: one result, field `r`.
    let old = serde_json::to_string(&ok_now(1)).unwrap();
    crate::helpers::redis_cli(&["XADD", &stream, "*", "r", &old]);
    let a = Arc::new(RedisFeed::connect(&redis, &prefix, 10_000).unwrap());
    let publishing: Vec<_> = (2..3_002)
        .map(|n| {
            let a = a.clone();
            tokio::spawn(async move {
                a.publish(LiveEvent::Status(Arc::new(ok_now(n)))).await;
            })
        })
        .collect();
    for p in publishing {
        p.await.unwrap();
    }
    let entries: u64 = crate::helpers::redis_cli(&["XLEN", &stream])
        .trim()
        .parse()
        .unwrap();
    assert!(entries <= 301, "3,000 events in {entries} entries");

    // A later instance: its ring holds all 3,001 events, each once.
    let hub = Arc::new(Hub::shared(10_000));
    let b = Arc::new(RedisFeed::connect(&redis, &prefix, 10_000).unwrap());
    let shutdown = CancellationToken::new();
    let reading = tokio::spawn(b.clone().run(hub.clone(), shutdown.clone()));
    let mut seen = hub.subscribe();
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let all = hub.after(Key::default(), 100_000).unwrap();
            if all.len() >= 3_001 {
                return all;
            }
            seen.changed().await.unwrap();
        }
    })
    .await
    .expect("the ring filled");
    assert_eq!(all.len(), 3_001);
    assert_eq!(all[0].1.url_id(), 1, "the old entry first");
    let mut ids: Vec<i64> = all.iter().map(|(_, e)| e.url_id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..3_002).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "keys increase");

    // A token inside an entry: the events after it, none before, none twice.
    let (place, (inside, _)) = all
        .iter()
        .enumerate()
        .find(|(_, (k, _))| k.1 % 1000 > 0)
        .expect("some entry holds more than one event");
    let token = hub.token(*inside);
    let resumed = hub.after(hub.resume(&token).unwrap(), 100_000).unwrap();
    assert_eq!(resumed.len(), all.len() - place - 1);
    assert_eq!(resumed[0].0, all[place + 1].0);

    // Published after the fill: read on, after the last one.
    a.publish_all(
        (5_000..5_010)
            .map(|n| LiveEvent::Status(Arc::new(ok_now(n))))
            .collect(),
    )
    .await;
    let more = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let more = hub.after(all[all.len() - 1].0, 100).unwrap();
            if more.len() >= 10 {
                return more;
            }
            seen.changed().await.unwrap();
        }
    })
    .await
    .expect("the reader took the new entry");
    let more: Vec<i64> = more.iter().map(|(_, e)| e.url_id()).collect();
    assert_eq!(more, (5_000..5_010).collect::<Vec<_>>());
    shutdown.cancel();
    reading.await.unwrap();
    crate::helpers::redis_cli(&["DEL", &stream]);
}

/// A shutdown ends open streams (they do not hold the drain), and the
/// server stops cleanly.
async fn open_streams_end_when_the_server_shuts_down(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let mut stream = watch(&app, &token, 0, "").await.unwrap();
    let ended = tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    });
    app.stop().await;
    tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the stream ended")
        .unwrap();
}

crate::on_both_backends!(
    open_streams_end_when_the_server_shuts_down,
    state_changes_and_incidents_stream_after_their_flush,
    statuses_of_the_callers_urls_stream_as_they_are_probed,
    a_resumed_stream_loses_none_and_repeats_none,
    old_foreign_and_malformed_tokens_are_refused,
    an_idle_stream_gets_bookmarks_it_can_resume_from,
    a_consumer_that_does_not_read_is_cut_off,
    watchers_per_user_are_limited,
    events_over_server_sent_events,
);
