//! Dependencies (`Url.depends_on`): while a URL's parent is DOWN, the
//! child's incident is part of the parent's (`Incident.parent_id`) and is
//! not notified on its own; a parent that is UP changes nothing. Bad
//! parents (itself, another user's, a loop) are refused and change nothing.

use std::time::{Duration, Instant};

use monitor::proto::monitor::v1 as pb;
use tonic::Code;

use crate::{
    channels::{create_channel, webhook},
    helpers::{Backend, TestApp, expect_code, expect_invalid, spawn_app, spawn_app_with},
    notifications::{Receiver, body, first_of_each, notifying, settled},
    target::Target,
    update::update,
};

/// Makes `child` depend on `parent` (0: on nothing).
async fn depend(app: &TestApp, token: &str, child: i64, parent: i64) -> pb::Url {
    let url = pb::Url {
        id: child,
        depends_on: parent,
        ..Default::default()
    };
    update(app, token, url, &["depends_on"])
        .await
        .expect("set depends_on")
        .into_inner()
}

/// The URL's first incident, once it has one.
async fn first_incident(app: &TestApp, token: &str, url_id: i64) -> pb::Incident {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(incident) = app.incidents(token, url_id).await.pop() {
            return incident;
        }
        assert!(Instant::now() < deadline, "no incident for URL {url_id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_parent_down_pages_once_for_its_failing_children(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let channel = create_channel(&app, &token, webhook("hooks", &receiver.url()))
        .await
        .expect("create channel")
        .into_inner();
    // The parent fails and is DOWN at its first probe; its children (and
    // the others) need three failures.
    let parent = app.add_url_every(&token, &target.url("/fail"), 1).await;
    let one = pb::Url {
        id: parent.id,
        failure_threshold: 1,
        ..Default::default()
    };
    update(&app, &token, one, &["failure_threshold"])
        .await
        .expect("threshold");
    let healthy_parent = app.add_url_every(&token, &target.url("/ok"), 1).await;
    let mut children = Vec::new();
    for n in 0..5 {
        let child = app
            .add_url_every(&token, &target.url(&format!("/fail?child={n}")), 1)
            .await;
        assert_eq!(
            depend(&app, &token, child.id, parent.id).await.depends_on,
            parent.id
        );
        children.push(child.id);
    }
    let alone = app
        .add_url_every(&token, &target.url("/fail?alone"), 1)
        .await;
    let of_healthy = app
        .add_url_every(&token, &target.url("/fail?of-healthy"), 1)
        .await;
    depend(&app, &token, of_healthy.id, healthy_parent.id).await;

    let parents_incident = first_incident(&app, &token, parent.id).await;
    for child in &children {
        let incident = first_incident(&app, &token, *child).await;
        assert_eq!(
            incident.parent_id, parents_incident.id,
            "URL {child}'s incident is part of its parent's"
        );
    }
    let mut paged = vec![parents_incident.id];
    for url in [alone.id, of_healthy.id] {
        let incident = first_incident(&app, &token, url).await;
        assert_eq!(incident.parent_id, 0, "URL {url}: its own page");
        paged.push(incident.id);
    }
    // Three pages, one per outage: the parent's, and the two others'.
    settled(&app, channel.id, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = first_of_each(&receiver.got());
    let mut sent: Vec<i64> = got
        .iter()
        .map(|r| {
            let b = body(r);
            assert_eq!(b["type"], "incident.opened", "{b}");
            b["data"]["incident"]["id"].as_i64().unwrap()
        })
        .collect();
    sent.sort_unstable();
    paged.sort_unstable();
    assert_eq!(sent, paged, "one notification per outage, none per child");
}

async fn bad_parents_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let a = app.add_url(&token, "https://example.com/a").await;
    let b = app.add_url(&token, "https://example.com/b").await;
    let c = app.add_url(&token, "https://example.com/c").await;
    let theirs = app.add_url(&other, "https://example.com/theirs").await;
    let to = |child: i64, parent: i64| pb::Url {
        id: child,
        depends_on: parent,
        ..Default::default()
    };
    expect_invalid(
        update(&app, &token, to(a.id, a.id), &["depends_on"]).await,
        "url.depends_on",
    );
    expect_invalid(
        update(&app, &token, to(a.id, -1), &["dependsOn"]).await,
        "url.depends_on",
    );
    let status = expect_code(
        update(&app, &token, to(a.id, theirs.id), &["depends_on"]).await,
        Code::NotFound,
    );
    assert!(
        status.message().contains(&theirs.id.to_string()),
        "{status:?}"
    );
    // a -> b -> c, then c -> a would be a loop.
    depend(&app, &token, a.id, b.id).await;
    depend(&app, &token, b.id, c.id).await;
    let status = expect_invalid(
        update(&app, &token, to(c.id, a.id), &["depends_on"]).await,
        "url.depends_on",
    );
    assert!(status.message().contains("loop"), "{status:?}");
    assert_eq!(
        app.get_url(&token, c.id).await.depends_on,
        0,
        "nothing changed"
    );
    // Another user's URL cannot point at mine either.
    expect_code(
        update(&app, &other, to(theirs.id, a.id), &["depends_on"]).await,
        Code::NotFound,
    );
    // Deleting a parent leaves its children depending on nothing; 0 clears.
    app.client
        .clone()
        .delete_url(crate::helpers::authed(
            pb::DeleteUrlRequest { id: c.id },
            &token,
        ))
        .await
        .expect("delete");
    assert_eq!(app.get_url(&token, b.id).await.depends_on, 0);
    assert_eq!(depend(&app, &token, a.id, 0).await.depends_on, 0);
}

crate::on_both_backends!(
    a_parent_down_pages_once_for_its_failing_children,
    bad_parents_are_refused_and_change_nothing,
);
