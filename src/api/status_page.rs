//! The public status page and its badges, served without a token:
//!
//! - `GET /status/{slug}`: HTML rendered on the server (maud), no script:
//!   per URL its label, state, uptime over 24 h / 7 d / 30 d / 90 d, p95
//!   latency over 24 h and 90 daily bars (inline SVG, a `<title>` tooltip
//!   each); open incidents on top, the last resolved ones below.
//! - `GET /status/{slug}/badges/{url_id}/{status|uptime-24h|uptime-30d|p95-24h}.svg`:
//!   shields.io's flat look; `…/{url_id}/shields.json`: shields.io's
//!   endpoint format (`schemaVersion`, `label`, `message`, `color`).
//! - `GET /status/assets/status.css`: the one stylesheet.
//!
//! An unknown slug, a page that is not public and a URL the page does not
//! list are answered with the same 404 and body, after the same one
//! lookup. Every answer carries an `ETag` (a hash of its body) and
//! `Cache-Control`; a matching `If-None-Match` gets 304.
//!
//! A built page is kept ([`PageCache`]) for `MONITOR_STATUS_PAGE_CACHE`
//! and served again, with its ETag, while the page's record (title, URLs,
//! public, show_urls, update time) is what it was built from: a request is
//! then the one lookup by slug. Its badges read their figures from it too.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use chrono::Datelike as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{
    domain::{state::UrlState, status_page::StatusPageRecord},
    error::Error,
    service::{
        StatusPageService,
        status_pages::{DayView, IncidentView, PageView, UrlView},
    },
};

const CSS: &str = include_str!("status_page.css");
/// How long clients and proxies may keep a page or a badge.
const PAGE_CACHE: &str = "public, max-age=30";
const CSS_CACHE: &str = "public, max-age=86400";
/// How often an open page reloads itself.
const REFRESH_SECONDS: u32 = 60;

/// Most bytes of built pages kept at once; the oldest go first.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Built public pages by slug: each served again for `fresh` after it was
/// built, as long as its page's record is unchanged.
#[derive(Debug)]
pub struct PageCache {
    fresh: Duration,
    built: Mutex<HashMap<String, Arc<Built>>>,
}

/// A page as built: its record then, its view and its HTML with the ETag.
#[derive(Debug)]
struct Built {
    record: StatusPageRecord,
    at: Instant,
    view: PageView,
    html: Bytes,
    etag: String,
}

impl PageCache {
    pub fn new(fresh: Duration) -> Self {
        Self {
            fresh,
            built: Mutex::default(),
        }
    }

    /// The page built from `record` within `fresh`, if there is one.
    fn get(&self, slug: &str, record: &StatusPageRecord) -> Option<Arc<Built>> {
        let built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        built
            .get(slug)
            .filter(|b| b.at.elapsed() < self.fresh && b.record == *record)
            .cloned()
    }

    /// Keeps `built` (nothing when caching is off); stale pages and, over
    /// [`CACHE_BYTES`], the oldest are dropped.
    fn put(&self, slug: &str, built: Arc<Built>) {
        if self.fresh.is_zero() {
            return;
        }
        let mut all = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|_, b| b.at.elapsed() < self.fresh);
        all.insert(slug.to_owned(), built);
        let mut bytes: usize = all.values().map(|b| b.html.len()).sum();
        while bytes > CACHE_BYTES {
            let Some(oldest) = all
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(slug, _)| slug.clone())
            else {
                break;
            };
            bytes -= all.remove(&oldest).map_or(0, |b| b.html.len());
        }
    }
}

#[derive(Debug, Clone)]
struct Pages {
    service: Arc<StatusPageService>,
    cache: Arc<PageCache>,
}

pub fn router(pages: Arc<StatusPageService>, cache_for: Duration) -> Router {
    Router::new()
        .route("/status/assets/status.css", get(stylesheet))
        .route("/status/{slug}", get(page))
        .route("/status/{slug}/badges/{url_id}/{file}", get(badge))
        .with_state(Pages {
            service: pages,
            cache: Arc::new(PageCache::new(cache_for)),
        })
}

async fn stylesheet(headers: HeaderMap) -> Response {
    cached(&headers, "text/css; charset=utf-8", CSS_CACHE, CSS.into())
}

/// The public page `record` as built within the cache's time, or built now.
async fn built(pages: &Pages, record: StatusPageRecord) -> Result<Arc<Built>, Error> {
    let slug = record.slug.as_str().to_owned();
    if let Some(built) = pages.cache.get(&slug, &record) {
        return Ok(built);
    }
    let at = Instant::now();
    let view = pages.service.page_view(&record, chrono::Utc::now()).await?;
    let html = render_page(&view).into_string();
    let built = Arc::new(Built {
        etag: etag_of(html.as_bytes()),
        html: Bytes::from(html),
        record,
        at,
        view,
    });
    pages.cache.put(&slug, built.clone());
    Ok(built)
}

async fn page(
    State(pages): State<Pages>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let record = match pages.service.public_record(&slug).await {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(),
        Err(e) => return failed(&e),
    };
    match built(&pages, record).await {
        Ok(built) => respond(
            &headers,
            "text/html; charset=utf-8",
            PAGE_CACHE,
            &built.etag,
            built.html.clone(),
        ),
        Err(e) => failed(&e),
    }
}

/// What a badge file shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Status,
    Uptime24h,
    Uptime30d,
    P95,
}

async fn badge(
    State(pages): State<Pages>,
    Path((slug, url_id, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (metric, json) = match file.as_str() {
        "status.svg" => (Metric::Status, false),
        "uptime-24h.svg" => (Metric::Uptime24h, false),
        "uptime-30d.svg" => (Metric::Uptime30d, false),
        "p95-24h.svg" => (Metric::P95, false),
        "shields.json" => (Metric::Status, true),
        _ => return not_found(),
    };
    // A malformed id is looked up like any other, so it answers alike.
    let url_id = url_id.parse::<i64>().unwrap_or(0);
    let record = match pages.service.public_record(&slug).await {
        Ok(Some(record)) if record.url_ids.contains(&url_id) => record,
        Ok(_) => return not_found(),
        Err(e) => return failed(&e),
    };
    // From the page as built, when it is; else this URL alone.
    let url = match pages.cache.get(&slug, &record) {
        Some(built) => Ok(built.view.urls.iter().find(|u| u.id == url_id).cloned()),
        None => {
            pages
                .service
                .url_of(&record, url_id, chrono::Utc::now())
                .await
        }
    };
    match url {
        Ok(Some(url)) => {
            let (label, message, color) = badge_text(&url, metric);
            if json {
                let body = json!({
                    "schemaVersion": 1,
                    "label": label,
                    "message": message,
                    "color": color,
                })
                .to_string();
                cached(&headers, "application/json", PAGE_CACHE, body)
            } else {
                cached(
                    &headers,
                    "image/svg+xml; charset=utf-8",
                    PAGE_CACHE,
                    badge_svg(&label, &message, color),
                )
            }
        }
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}

/// A strong validator: a hash of the body.
fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// `body` with its validators, or 304 when the client has it already.
fn cached(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    body: String,
) -> Response {
    let etag = etag_of(body.as_bytes());
    respond(headers, content_type, cache, &etag, Bytes::from(body))
}

/// `body` with `etag`, or 304 when `If-None-Match` names it.
fn respond(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    etag: &str,
    body: Bytes,
) -> Response {
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let etag = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
    ];
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The one answer for a page or URL that is not shown.
fn not_found() -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Not found" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/status/assets/status.css";
            }
            body { main { h1 { "Not found" } p { "There is no public status page here." } } }
        }
    };
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=30"),
        ],
        body.into_string(),
    )
        .into_response()
}

fn failed(err: &Error) -> Response {
    tracing::error!(error = %err, "status page failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "the status page is unavailable; try again shortly",
    )
        .into_response()
}

fn state_name(state: UrlState) -> &'static str {
    match state {
        UrlState::Pending => "pending",
        UrlState::Up => "up",
        UrlState::Degraded => "degraded",
        UrlState::Down => "down",
        UrlState::Paused => "paused",
        UrlState::Maintenance => "maintenance",
    }
}

fn state_title(state: UrlState) -> &'static str {
    match state {
        UrlState::Pending => "Pending",
        UrlState::Up => "Up",
        UrlState::Degraded => "Degraded",
        UrlState::Down => "Down",
        UrlState::Paused => "Paused",
        UrlState::Maintenance => "Under maintenance",
    }
}

/// `99.95%`; `100%` only when nothing failed; `–` with no probe.
fn percent(uptime: Option<f64>) -> String {
    match uptime {
        None => "–".into(),
        Some(u) if u >= 1.0 => "100%".into(),
        Some(u) => format!("{:.2}%", (u * 100.0).min(99.99)),
    }
}

/// A latency in µs as `123 ms` or `1.24 s`.
fn latency(us: Option<f64>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us < 1_000_000.0 => format!("{:.0} ms", us / 1000.0),
        Some(us) => format!("{:.2} s", us / 1_000_000.0),
    }
}

/// The class (colour) of an uptime share.
fn uptime_class(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => "none",
        Some(u) if u >= 0.999 => "good",
        Some(u) if u >= 0.99 => "fair",
        Some(u) if u >= 0.95 => "poor",
        Some(_) => "bad",
    }
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn summary(view: &PageView) -> (&'static str, String) {
    let count = |s: UrlState| view.urls.iter().filter(|u| u.state == s).count();
    let (down, degraded) = (count(UrlState::Down), count(UrlState::Degraded));
    if down > 0 {
        ("down", format!("{down} of {} down", view.urls.len()))
    } else if degraded > 0 {
        (
            "degraded",
            format!("{degraded} of {} degraded", view.urls.len()),
        )
    } else if view.urls.iter().all(|u| u.state == UrlState::Up) && !view.urls.is_empty() {
        ("up", "All systems operational".into())
    } else {
        ("pending", "No problems known".into())
    }
}

fn render_page(view: &PageView) -> Markup {
    let (summary_state, summary_text) = summary(view);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Reloads itself (no script needed); a reload within the
                // cache's time is a 304 or the page as built.
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { (view.title) }
                // No favicon request (its 404 would be a console error).
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/status/assets/status.css";
            }
            body {
                main {
                    header {
                        h1 { (view.title) }
                        p class={ "summary state-" (summary_state) } { (summary_text) }
                    }
                    @if !view.open.is_empty() {
                        section class="incidents open" id="open-incidents" {
                            h2 { "Open incidents" }
                            ul { @for i in &view.open { (incident(i)) } }
                        }
                    }
                    section class="urls" {
                        @for url in &view.urls { (url_block(url)) }
                    }
                    section class="incidents resolved" id="resolved-incidents" {
                        h2 { "Resolved incidents" }
                        @if view.resolved.is_empty() {
                            p class="none" { "No incidents." }
                        } @else {
                            ul { @for i in &view.resolved { (incident(i)) } }
                        }
                    }
                }
            }
        }
    }
}

fn incident(i: &IncidentView) -> Markup {
    let state = state_name(i.state);
    html! {
        li class={ "incident state-" (state) } {
            span class="incident-name" { (i.label) }
            " "
            span class={ "state state-" (state) } { (state_title(i.state)) }
            " "
            span class="incident-time" {
                "since " (when(i.opened_at))
                @if let Some(at) = i.resolved_at { ", resolved " (when(at)) }
                " · " (i.failed_probes) " failed probes"
            }
        }
    }
}

fn url_block(url: &UrlView) -> Markup {
    let state = state_name(url.state);
    html! {
        article class="url" id={ "url-" (url.id) } data-state=(state) {
            div class="url-head" {
                h3 class="url-name" { (url.label) }
                span class={ "state state-" (state) } { (state_title(url.state)) }
            }
            @if let Some(address) = &url.address {
                p class="url-address" { (address) }
            }
            dl class="figures" {
                div { dt { "24 h" } dd class="uptime-24h" { (percent(url.uptime_24h)) } }
                div { dt { "7 d" } dd class="uptime-7d" { (percent(url.uptime_7d)) } }
                div { dt { "30 d" } dd class="uptime-30d" { (percent(url.uptime_30d)) } }
                div { dt { "90 d" } dd class="uptime-90d" { (percent(url.uptime_90d)) } }
                div { dt { "p95 24 h" } dd class="p95-24h" { (latency(url.p95_24h_us)) } }
            }
            (bars(&url.days))
            div class="axis" { span { (url.days.len()) " days ago" } span { "today" } }
        }
    }
}

/// Width of one bar and the gap after it, in SVG units.
const BAR: usize = 3;
const GAP: usize = 1;

fn bars(days: &[DayView]) -> Markup {
    let width = days.len() * (BAR + GAP);
    let mut svg = String::new();
    for (i, day) in days.iter().enumerate() {
        // Digits and fixed words only: nothing to escape. The date written
        // by hand: strftime parses its pattern on each of 9,000 bars.
        let _ = write!(
            svg,
            "<rect class=\"bar {}\" x=\"{}\" width=\"{BAR}\" height=\"30\" rx=\"1\"><title>{:04}-{:02}-{:02}: {} uptime, {} incident{}</title></rect>",
            uptime_class(day.uptime),
            i * (BAR + GAP),
            day.date.year(),
            day.date.month(),
            day.date.day(),
            match day.uptime {
                None => "no data, no".to_owned(),
                Some(_) => percent(day.uptime),
            },
            day.incidents,
            if day.incidents == 1 { "" } else { "s" }
        );
    }
    html! {
        svg class="bars" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (width) " 30" }
            preserveAspectRatio="none" role="img" aria-label={ (days.len()) " days of uptime" } {
            (PreEscaped(svg))
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Shields' named colours, as hex.
fn color_hex(name: &str) -> &'static str {
    match name {
        "brightgreen" => "#4c1",
        "green" => "#97ca00",
        "yellow" => "#dfb317",
        "orange" => "#fe7d37",
        "red" => "#e05d44",
        _ => "#9f9f9f",
    }
}

fn badge_text(url: &UrlView, metric: Metric) -> (String, String, &'static str) {
    let uptime_color = |u: Option<f64>| match uptime_class(u) {
        "good" => "brightgreen",
        "fair" => "green",
        "poor" => "yellow",
        "bad" => "red",
        _ => "lightgrey",
    };
    match metric {
        Metric::Status => {
            let color = match url.state {
                UrlState::Up => "brightgreen",
                UrlState::Degraded => "yellow",
                UrlState::Down => "red",
                UrlState::Maintenance => "blue",
                UrlState::Pending | UrlState::Paused => "lightgrey",
            };
            (url.label.clone(), state_name(url.state).to_owned(), color)
        }
        Metric::Uptime24h => (
            "uptime 24h".into(),
            percent(url.uptime_24h),
            uptime_color(url.uptime_24h),
        ),
        Metric::Uptime30d => (
            "uptime 30d".into(),
            percent(url.uptime_30d),
            uptime_color(url.uptime_30d),
        ),
        Metric::P95 => {
            let color = match url.p95_24h_us {
                None => "lightgrey",
                Some(us) if us < 300_000.0 => "brightgreen",
                Some(us) if us < 1_000_000.0 => "yellow",
                Some(_) => "orange",
            };
            ("p95 24h".into(), latency(url.p95_24h_us), color)
        }
    }
}

/// Roughly how wide Verdana 11 px draws `s` (shields measures the same font).
fn text_width(s: &str) -> usize {
    let tenths: usize = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' => 40,
            'f' | 'r' | 't' | '(' | ')' | '-' | 'I' => 50,
            'm' | 'w' | 'M' | 'W' | '%' => 100,
            c if c.is_ascii_uppercase() || c.is_ascii_digit() => 75,
            _ => 68,
        })
        .sum();
    tenths.div_ceil(10)
}

/// A badge in shields.io's flat style: grey label left, coloured value right.
fn badge_svg(label: &str, message: &str, color: &str) -> String {
    let (lw, mw) = (text_width(label) + 10, text_width(message) + 10);
    let width = lw + mw;
    let fill = color_hex(color);
    let (label, message) = (escape(label), escape(message));
    let (lx, mx) = (lw * 5, lw * 10 + mw * 5);
    let (ltl, mtl) = ((lw - 10) * 10, (mw - 10) * 10);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {message}"><title>{label}: {message}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{fill}"/><rect width="{width}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{mtl}">{message}</text><text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{mtl}">{message}</text></g></svg>"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_never_rounded_up_to_a_hundred_percent() {
        assert_eq!(percent(Some(1.0)), "100%");
        assert_eq!(percent(Some(0.999_999)), "99.99%");
        assert_eq!(percent(Some(0.5)), "50.00%");
        assert_eq!(percent(None), "–");
    }

    #[test]
    fn latencies_read_in_milliseconds_or_seconds() {
        assert_eq!(latency(Some(123_400.0)), "123 ms");
        assert_eq!(latency(Some(1_240_000.0)), "1.24 s");
    }
}
