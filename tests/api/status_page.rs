//! Status pages: the owner's GetStatusPage / UpdateStatusPage (gRPC and
//! JSON), and the public page and badges: what they show from seeded
//! probes and incidents, what they never show, one 404 for everything not
//! shown, ETag / 304, and badges as well-formed SVG and shields.io JSON.

use chrono::{DateTime, Utc};
use monitor::{domain::ProbeResult, proto::monitor::v1 as pb, store::outcomes};
use reqwest::{StatusCode, header};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, authed, expect_code, expect_invalid, spawn_app, spawn_app_with,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn page(slug: &str, url_ids: Vec<i64>, public: bool) -> pb::StatusPage {
    pb::StatusPage {
        slug: slug.into(),
        title: "Acme status".into(),
        url_ids,
        public,
        ..pb::StatusPage::default()
    }
}

pub async fn update_page(
    app: &TestApp,
    token: &str,
    page: pb::StatusPage,
    mask: &[&str],
) -> Result<tonic::Response<pb::StatusPage>, tonic::Status> {
    let update_mask = (!mask.is_empty()).then(|| pbjson_types::FieldMask {
        paths: mask.iter().map(|p| (*p).to_owned()).collect(),
    });
    app.client
        .clone()
        .update_status_page(authed(
            pb::UpdateStatusPageRequest {
                page: Some(page),
                update_mask,
            },
            token,
        ))
        .await
}

async fn get_page(
    app: &TestApp,
    token: &str,
) -> Result<tonic::Response<pb::StatusPage>, tonic::Status> {
    app.client
        .clone()
        .get_status_page(authed(pb::GetStatusPageRequest {}, token))
        .await
}

/// A unique slug per test (Postgres tests share no database, but be safe).
fn slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn the_owner_creates_reads_and_changes_the_status_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let mine = app.add_url(&token, "https://example.com/a").await.id;
    let theirs = app.add_url(&other, "https://example.com/b").await.id;
    expect_code(get_page(&app, &token).await, Code::NotFound);

    // Refused by name, with nothing written.
    let mut no_slug = page("", vec![mine], true);
    no_slug.slug.clear();
    expect_invalid(update_page(&app, &token, no_slug, &[]).await, "page.slug");
    for bad in ["ab", "Acme", "acme_page", "acme page", &"a".repeat(41)] {
        expect_invalid(
            update_page(&app, &token, page(bad, vec![mine], true), &[]).await,
            "page.slug",
        );
    }
    expect_invalid(
        update_page(&app, &token, page("acme-ok", vec![mine, mine], true), &[]).await,
        "page.url_ids",
    );
    let mut bad_title = page("acme-ok", vec![mine], true);
    bad_title.title = "a\u{7}b".into();
    expect_invalid(
        update_page(&app, &token, bad_title, &[]).await,
        "page.title",
    );
    expect_code(
        update_page(&app, &token, page("acme-ok", vec![mine, theirs], true), &[]).await,
        Code::NotFound,
    );
    expect_invalid(
        update_page(&app, &token, page("acme-ok", vec![mine], true), &["colour"]).await,
        "update_mask",
    );
    expect_code(get_page(&app, &token).await, Code::NotFound);

    // Created by the first update; public and show_urls default to false.
    let slug = slug("acme");
    let mut first = page(&slug, vec![mine], false);
    first.public = false;
    let created = update_page(&app, &token, first, &[])
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.slug, slug);
    assert_eq!(created.url_ids, vec![mine]);
    assert!(!created.public && !created.show_urls);
    assert!(created.update_time.is_some());
    assert_eq!(get_page(&app, &token).await.unwrap().into_inner(), created);

    // A mask changes only its fields.
    let changed = update_page(
        &app,
        &token,
        pb::StatusPage {
            title: "New title".into(),
            public: true,
            ..pb::StatusPage::default()
        },
        &["title", "public"],
    )
    .await
    .expect("masked update")
    .into_inner();
    assert_eq!(changed.slug, slug);
    assert_eq!(changed.title, "New title");
    assert!(changed.public);
    assert_eq!(changed.url_ids, vec![mine]);

    // The slug is unique across users; the other user writes nothing.
    let status = expect_code(
        update_page(&app, &other, page(&slug, vec![theirs], true), &[]).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains(&slug), "{}", status.message());
    expect_code(get_page(&app, &other).await, Code::NotFound);
}

async fn the_page_is_written_and_read_over_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let mine = app.add_url(&token, "https://example.com/a").await.id;
    let slug = slug("acme");
    let auth = format!("Bearer {token}");
    let (code, body) = app
        .json(
            reqwest::Method::PUT,
            "/v1/status-page",
            Some(json!({"slug": slug, "title": "New title", "urlIds": [mine.to_string()]})),
            Some(&auth),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["urlIds"], json!([mine.to_string()]));
    assert_ne!(body["public"], json!(true), "private by default: {body}");
    // updateMask in the query changes only its fields.
    let (code, body) = app
        .json(
            reqwest::Method::PUT,
            "/v1/status-page?updateMask=showUrls,urlIds",
            Some(json!({"showUrls": true, "urlIds": []})),
            Some(&auth),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["showUrls"], true);
    assert_eq!(body["title"], "New title");
    assert!(
        body.get("urlIds").is_none_or(|ids| ids == &json!([])),
        "{body}"
    );
    let (code, body) = app.get_json("/v1/status-page", Some(&auth)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["slug"], slug.as_str());
    let (code, body) = app
        .json(
            reqwest::Method::PUT,
            "/v1/status-page",
            Some(json!({"slug": "NO"})),
            Some(&auth),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("page.slug:"),
        "{body}"
    );
    let (code, _) = app.get_json("/v1/status-page", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

/// Moves a URL's creation and schedule to `t0`, one probe a minute.
async fn backdate(app: &TestApp, url_id: i64, t0: i64) {
    let db = &app.db;
    let created = DateTime::<Utc>::from_timestamp_millis(t0).unwrap();
    let created = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("'{}'", created.to_rfc3339()),
        _ => format!(
            "'{}'",
            monitor::store::statuses::sqlite_timestamp_text(created)
        ),
    };
    for sql in [
        format!(
            "UPDATE urls SET created_at = {created}, period_seconds = 60, phase_ms = 0 WHERE id = {url_id}"
        ),
        format!(
            "UPDATE url_periods SET since_ms = {t0}, period_seconds = 60, phase_ms = 0 WHERE url_id = {url_id}"
        ),
    ] {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
}

/// Results every ten minutes from `t0` to now; `failing(k)` picks the
/// probes answered 500. Written through the store as the flush writes them.
async fn seed_results(app: &TestApp, url_id: i64, t0: i64, failing: impl Fn(i64, i64) -> bool) {
    let now = Utc::now().timestamp_millis();
    let step = 10 * MINUTE;
    let count = (now - t0) / step;
    let results: Vec<ProbeResult> = (0..count)
        .map(|k| {
            let due_ms = t0 + k * step;
            ProbeResult {
                url_id,
                due_ms,
                started_us: due_ms * 1000 + 1_000,
                status_code: if failing(k, count) { 500 } else { 200 },
                latency_us: 20_000 + (k % 10) * 10_000,
                ..ProbeResult::default()
            }
        })
        .collect();
    for batch in results.chunks(200) {
        outcomes::write_batch(&app.db, &batch.iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }
}

struct Seeded {
    token: String,
    slug: String,
    api: i64,
    web: i64,
    hidden: i64,
}

/// Two URLs on a public page and one not on it, with three days of
/// results: "API" had an outage two days ago (resolved); www.example.com is
/// down now (open incident).
async fn seeded_page(app: &TestApp) -> Seeded {
    let (_, token) = app.user().await;
    let api = app
        .add_url(&token, "https://api.example.com/v1/health?token=s3cret")
        .await
        .id;
    app.client
        .clone()
        .update_url(authed(
            pb::UpdateUrlRequest {
                url: Some(pb::Url {
                    id: api,
                    name: "API".into(),
                    ..pb::Url::default()
                }),
                update_mask: None,
            },
            &token,
        ))
        .await
        .expect("name the URL");
    let web = app
        .add_url(&token, "https://www.example.com/shop?key=s3cret")
        .await
        .id;
    let hidden = app.add_url(&token, "https://hidden.example.com/").await.id;
    let now = Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(HOUR) - 3 * DAY;
    for id in [api, web, hidden] {
        backdate(app, id, t0).await;
    }
    // Two days ago, an hour of failures.
    seed_results(app, api, t0, |k, _| (144..150).contains(&k)).await;
    // Failing for the last hour.
    seed_results(app, web, t0, |k, count| k >= count - 6).await;
    seed_results(app, hidden, t0, |_, _| false).await;
    let slug = slug("acme");
    let mut shown = page(&slug, vec![api, web], true);
    shown.title = "Acme <services>".into();
    update_page(app, &token, shown, &[]).await.expect("page");
    Seeded {
        token,
        slug,
        api,
        web,
        hidden,
    }
}

async fn get(app: &TestApp, path: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(app.http_url(path));
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    req.send().await.expect("GET")
}

/// The text of the element whose opening tag contains `marker`, up to the
/// next `</`.
fn text_after<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html.find(marker).unwrap_or_else(|| panic!("no {marker}"));
    let rest = &html[start..];
    let open_end = rest.find('>').unwrap() + 1;
    let rest = &rest[open_end..];
    &rest[..rest.find("</").unwrap()]
}

async fn a_public_page_shows_its_urls_uptime_bars_and_incidents(backend: Backend) {
    let app = spawn_app(backend).await;
    let seeded = seeded_page(&app).await;
    let res = get(&app, &format!("/status/{}", seeded.slug), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=30");
    let html = res.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("name=\"viewport\""));
    assert!(html.contains("href=\"/status/assets/status.css\""));
    assert!(
        html.contains("<h1>Acme &lt;services&gt;</h1>"),
        "title escaped"
    );
    // Names, or hosts; never paths or query strings (show_urls is off).
    assert!(html.contains(">API</h3>"));
    assert!(html.contains(">www.example.com</h3>"));
    for never in [
        "s3cret",
        "token=",
        "/v1/health",
        "/shop",
        "hidden.example.com",
        "url-address",
    ] {
        assert!(!html.contains(never), "{never} shown");
    }
    // States, figures and 90 bars per URL.
    let api_block = &html[html.find(&format!("id=\"url-{}\"", seeded.api)).unwrap()..];
    let web_block = &html[html.find(&format!("id=\"url-{}\"", seeded.web)).unwrap()..];
    assert!(api_block.starts_with(&format!("id=\"url-{}\" data-state=\"up\"", seeded.api)));
    assert!(web_block.starts_with(&format!("id=\"url-{}\" data-state=\"down\"", seeded.web)));
    assert_eq!(text_after(api_block, "class=\"uptime-24h\""), "100%");
    let api_90d = text_after(api_block, "class=\"uptime-90d\"");
    assert!(api_90d.starts_with("98."), "6 of ~435 failed: {api_90d}");
    let web_24h = text_after(web_block, "class=\"uptime-24h\"");
    assert!(
        web_24h.starts_with("95.") || web_24h.starts_with("96."),
        "{web_24h}"
    );
    assert!(text_after(api_block, "class=\"p95-24h\"").ends_with(" ms"));
    assert_eq!(html.matches("<rect class=\"bar ").count(), 180);
    // The day of the API's outage says so in its tooltip.
    assert!(
        html.contains(" uptime, 1 incident</title>"),
        "a day with one incident"
    );
    assert!(
        html.contains("no data, no uptime, 0 incidents</title>"),
        "days before the URL"
    );
    // The open incident on top, the resolved one below.
    let open = html.find("id=\"open-incidents\"").expect("open incidents");
    let urls = html.find("class=\"urls\"").unwrap();
    let resolved = html
        .find("id=\"resolved-incidents\"")
        .expect("resolved incidents");
    assert!(open < urls && urls < resolved);
    assert!(html[open..urls].contains("www.example.com"));
    assert!(html[resolved..].contains(">API</span>"));
    assert!(!html[resolved..].contains("www.example.com"));

    // show_urls shows the addresses.
    update_page(
        &app,
        &seeded.token,
        pb::StatusPage {
            show_urls: true,
            ..pb::StatusPage::default()
        },
        &["show_urls"],
    )
    .await
    .unwrap();
    let html = get(&app, &format!("/status/{}", seeded.slug), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("https://api.example.com/v1/health?token=s3cret"));
    assert!(!html.contains("hidden.example.com"));

    // The stylesheet, cached.
    let css = get(&app, "/status/assets/status.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert!(css.headers().contains_key(header::ETAG));
}

async fn unknown_private_and_unlisted_answer_the_same_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let seeded = seeded_page(&app).await;
    let (_, other) = app.user().await;
    let private_slug = slug("private");
    update_page(&app, &other, page(&private_slug, vec![], false), &[])
        .await
        .unwrap();
    let paths = [
        "/status/no-such-page".to_owned(),
        format!("/status/{private_slug}"),
        format!("/status/{private_slug}/badges/{}/status.svg", seeded.api),
        format!(
            "/status/{}/badges/{}/status.svg",
            seeded.slug, seeded.hidden
        ),
        format!(
            "/status/{}/badges/{}/shields.json",
            seeded.slug, seeded.hidden
        ),
        format!("/status/{}/badges/999999/uptime-24h.svg", seeded.slug),
        format!("/status/{}/badges/abc/status.svg", seeded.slug),
        format!("/status/{}/badges/{}/other.svg", seeded.slug, seeded.api),
    ];
    let mut bodies = Vec::new();
    for path in &paths {
        let res = get(&app, path, None).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(!res.headers().contains_key(header::ETAG));
        bodies.push(res.text().await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one body for all");
    assert!(!bodies[0].contains(&seeded.slug));
    // Made private, the page is gone too.
    update_page(&app, &seeded.token, pb::StatusPage::default(), &["public"])
        .await
        .unwrap();
    let res = get(&app, &format!("/status/{}", seeded.slug), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.text().await.unwrap(), bodies[0]);
}

async fn pages_and_badges_carry_an_etag_and_answer_304(backend: Backend) {
    let app = spawn_app(backend).await;
    let seeded = seeded_page(&app).await;
    for path in [
        format!("/status/{}", seeded.slug),
        format!(
            "/status/{}/badges/{}/uptime-30d.svg",
            seeded.slug, seeded.api
        ),
        "/status/assets/status.css".to_owned(),
    ] {
        let first = get(&app, &path, None).await;
        assert_eq!(first.status(), StatusCode::OK, "{path}");
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = get(&app, &path, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert!(again.headers().contains_key(header::CACHE_CONTROL));
        assert!(again.text().await.unwrap().is_empty());
        let listed = get(&app, &path, Some(&format!("\"x\", W/{etag}"))).await;
        assert_eq!(listed.status(), StatusCode::NOT_MODIFIED, "{path}");
        let stale = get(&app, &path, Some("\"stale\"")).await;
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
    }
    // A change to the page changes its tag.
    let path = format!("/status/{}", seeded.slug);
    let before = get(&app, &path, None).await.headers()[header::ETAG].clone();
    update_page(
        &app,
        &seeded.token,
        pb::StatusPage {
            title: "Renamed".into(),
            ..pb::StatusPage::default()
        },
        &["title"],
    )
    .await
    .unwrap();
    let after = get(&app, &path, Some(before.to_str().unwrap())).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_ne!(after.headers()[header::ETAG], before);
}

async fn rename(app: &TestApp, token: &str, id: i64, name: &str) {
    app.client
        .clone()
        .update_url(authed(
            pb::UpdateUrlRequest {
                url: Some(pb::Url {
                    id,
                    name: name.into(),
                    ..pb::Url::default()
                }),
                update_mask: Some(pbjson_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            },
            token,
        ))
        .await
        .expect("rename the URL");
}

/// A built page is served again (same body, same tag; its badges too) for
/// MONITOR_STATUS_PAGE_CACHE; a change to the page itself, or the page
/// going private, shows at once; after that time, everything new shows.
async fn a_built_page_is_served_again_until_it_changes_or_ages(backend: Backend) {
    let fresh = std::time::Duration::from_secs(5);
    let app = spawn_app_with(backend, |s| s.status_pages.status_page_cache = fresh).await;
    let seeded = seeded_page(&app).await;
    let path = format!("/status/{}", seeded.slug);
    let badge = format!("/status/{}/badges/{}/status.svg", seeded.slug, seeded.api);
    let page_text = |res: reqwest::Response| async move {
        assert_eq!(res.status(), StatusCode::OK);
        let tag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
        (tag, res.text().await.unwrap())
    };

    let (tag, html) = page_text(get(&app, &path, None).await).await;
    assert!(html.contains(">API<"), "{html}");
    // An open page reloads itself, without a script.
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="60">"#),
        "{html}"
    );
    // A renamed URL is not part of the page's record: the built page stays.
    rename(&app, &seeded.token, seeded.api, "API two").await;
    let (again_tag, again) = page_text(get(&app, &path, None).await).await;
    assert_eq!((&again_tag, &again), (&tag, &html), "served again as built");
    let (_, svg) = page_text(get(&app, &badge, None).await).await;
    assert!(svg.contains(">API<"), "from the page as built: {svg}");

    // A change to the page is built at once, with what is new.
    update_page(
        &app,
        &seeded.token,
        pb::StatusPage {
            title: "Acme, retitled".into(),
            ..pb::StatusPage::default()
        },
        &["title"],
    )
    .await
    .unwrap();
    let (new_tag, html) = page_text(get(&app, &path, None).await).await;
    assert_ne!(new_tag, tag);
    assert!(
        html.contains("Acme, retitled") && html.contains(">API two<"),
        "{html}"
    );

    // Aged out: built anew.
    rename(&app, &seeded.token, seeded.api, "API three").await;
    tokio::time::sleep(fresh + std::time::Duration::from_millis(500)).await;
    let (_, html) = page_text(get(&app, &path, None).await).await;
    assert!(html.contains(">API three<"), "{html}");
    let (_, svg) = page_text(get(&app, &badge, None).await).await;
    assert!(svg.contains("API three"), "{svg}");

    // Private: the same 404 at once, page and badge alike.
    update_page(
        &app,
        &seeded.token,
        pb::StatusPage {
            public: false,
            ..pb::StatusPage::default()
        },
        &["public"],
    )
    .await
    .unwrap();
    assert_eq!(get(&app, &path, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, &badge, None).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn badges_are_svg_and_shields_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let seeded = seeded_page(&app).await;
    let base = format!("/status/{}/badges", seeded.slug);
    let cases = [
        (seeded.api, "status", "API", "up", "#4c1"),
        (seeded.web, "status", "www.example.com", "down", "#e05d44"),
        (seeded.api, "uptime-24h", "uptime 24h", "100%", "#4c1"),
        (seeded.api, "uptime-30d", "uptime 30d", "98.", "#dfb317"),
        (seeded.api, "p95-24h", "p95 24h", " ms", "#4c1"),
    ];
    for (url, file, label, message, fill) in cases {
        let res = get(&app, &format!("{base}/{url}/{file}.svg"), None).await;
        assert_eq!(res.status(), StatusCode::OK, "{file}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=30");
        let svg = res.text().await.unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{file}: {e}\n{svg}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert_eq!(root.attribute("height"), Some("20"));
        let width: u32 = root.attribute("width").unwrap().parse().unwrap();
        let rects: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("height") == Some("20"))
            .collect();
        let label_w: u32 = rects[1].attribute("width").unwrap().parse().unwrap();
        let value_w: u32 = rects[2].attribute("width").unwrap().parse().unwrap();
        assert_eq!(label_w + value_w, width);
        assert_eq!(rects[1].attribute("fill"), Some("#555"), "grey label");
        assert_eq!(rects[2].attribute("fill"), Some(fill), "{file}");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(texts[0], label);
        assert!(texts[2].contains(message), "{file}: {}", texts[2]);
        let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
        assert_eq!(
            title.text(),
            Some(format!("{}: {}", texts[0], texts[2]).as_str())
        );
    }

    // shields.io's endpoint schema: schemaVersion 1 and strings label,
    // message and color; nothing else it would refuse.
    let res = get(&app, &format!("{base}/{}/shields.json", seeded.web), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    let object = body.as_object().expect("an object");
    assert_eq!(object["schemaVersion"], json!(1));
    for field in ["label", "message", "color"] {
        assert!(object[field].is_string(), "{field}: {body}");
    }
    assert!(!object["message"].as_str().unwrap().is_empty());
    let allowed = [
        "schemaVersion",
        "label",
        "message",
        "color",
        "labelColor",
        "isError",
        "namedLogo",
        "logoSvg",
        "logoColor",
        "logoWidth",
        "style",
        "cacheSeconds",
    ];
    assert!(
        object.keys().all(|k| allowed.contains(&k.as_str())),
        "{body}"
    );
    assert_eq!(
        body,
        json!({"schemaVersion": 1, "label": "www.example.com", "message": "down", "color": "red"})
    );
}

crate::on_both_backends!(
    the_owner_creates_reads_and_changes_the_status_page,
    the_page_is_written_and_read_over_json,
    a_public_page_shows_its_urls_uptime_bars_and_incidents,
    unknown_private_and_unlisted_answer_the_same_404,
    pages_and_badges_carry_an_etag_and_answer_304,
    a_built_page_is_served_again_until_it_changes_or_ages,
    badges_are_svg_and_shields_json,
);

/// Whether Debian's chromium and chromium-driver are installed; outside CI
/// the browser test is skipped without them (.ci/run installs them).
fn chromium_missing() -> bool {
    let found = |name: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing = !(found("chromium") && found("chromedriver"));
    assert!(
        !(missing && std::env::var("CI").as_deref() == Ok("true")),
        "CI needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
    );
    missing
}

/// The page in headless Chromium: names, states, 90 bars with tooltips,
/// the incident lists, no sideways scrolling on a phone, no console error;
/// a screenshot is saved (docs/status-page.png is one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_a_real_browser_without_console_errors() {
    if chromium_missing() {
        eprintln!("skipped: chromium or chromedriver not installed");
        return;
    }
    let bin = crate::helpers::tools_venv();
    let app = spawn_app(Backend::Sqlite).await;
    let seeded = seeded_page(&app).await;
    update_page(
        &app,
        &seeded.token,
        pb::StatusPage {
            title: "Acme status".into(),
            ..pb::StatusPage::default()
        },
        &["title"],
    )
    .await
    .unwrap();
    let expected = json!({
        "title": "Acme status",
        "urls": [
            {"id": seeded.api, "name": "API", "state": "up"},
            {"id": seeded.web, "name": "www.example.com", "state": "down"},
        ],
        "open": ["www.example.com"],
        "resolved": ["API"],
    });
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/status_page_browser.py");
    let mut cmd = std::process::Command::new(bin.join("python"));
    cmd.arg(script)
        .arg(app.http_url(&format!("/status/{}", seeded.slug)))
        .arg(expected.to_string())
        .arg(&screenshot);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("running the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 10_000, "{} bytes", png.len());
}
