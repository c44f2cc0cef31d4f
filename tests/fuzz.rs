//! Property tests (proptest) over hostile input: URL, email and period
//! validation, canonical JSON decoding of every request, and the seed's
//! case-insensitive JSON. They never panic, accept only what the rules
//! allow, and what they accept is stable.
//!
//! `cargo test --test fuzz` runs the default number of cases; longer runs:
//! `bash scripts/fuzz.sh 300` (seconds). Failures proptest finds are kept in
//! `tests/fuzz.proptest-regressions` and replayed first on every run.

use std::time::Duration;

use monitor::{
    api::convert::{period_from_proto, url_update_from_proto},
    api::seed,
    domain::{Email, PeriodBounds, TargetUrl},
    proto::monitor::v1 as pb,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

/// Strings shaped like URLs, with the pieces attackers vary.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("http"),
        Just("https"),
        Just("HTTP"),
        Just("ftp"),
        Just("file"),
        Just("javascript"),
        Just("")
    ];
    let userinfo = prop_oneof![Just(""), Just("user@"), Just("user:pass@"), Just(":@")];
    let host = prop_oneof![
        "[a-z0-9.-]{0,30}",
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        Just("169.254.169.254".to_owned()),
        Just("xn--nxasmq6b".to_owned()),
        "\\PC{0,10}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        (0u32..70000).prop_map(|p| format!(":{p}"))
    ];
    let path = "[/?#%a-zA-Z0-9 .\\\\@:]{0,40}";
    (scheme, userinfo, host, port, path)
        .prop_map(|(s, u, h, p, rest)| format!("{s}://{u}{h}{p}{rest}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn target_urls_are_http_with_a_host_no_credentials_and_stable(raw in prop_oneof![url_like(), "\\PC{0,80}"]) {
        if let Ok(url) = TargetUrl::parse("url", &raw) {
            let parsed = url::Url::parse(url.as_str()).expect("accepted URLs parse");
            prop_assert!(matches!(parsed.scheme(), "http" | "https"));
            prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()));
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            prop_assert!(url.as_str().chars().count() <= 2048 + 16);
            let again = TargetUrl::parse("url", url.as_str()).expect("normal form is accepted");
            prop_assert_eq!(again.as_str(), url.as_str());
        }
    }

    #[test]
    fn long_urls_are_refused(n in 2049usize..5000) {
        let raw = format!("https://example.com/{}", "a".repeat(n));
        prop_assert!(TargetUrl::parse("url", &raw).is_err());
    }

    #[test]
    fn emails_are_refused_or_kept_lowercase(raw in prop_oneof!["[a-zA-Z0-9._%+-]{0,20}@[a-zA-Z0-9.-]{0,20}", "\\PC{0,40}"]) {
        if let Ok(email) = Email::parse("email", &raw) {
            prop_assert_eq!(email.as_str(), raw.trim().to_lowercase());
            prop_assert!(email.as_str().contains('@'));
        }
    }

    #[test]
    fn periods_are_whole_seconds_within_bounds(seconds in any::<i64>(), nanos in prop_oneof![Just(0i32), any::<i32>()]) {
        let bounds = PeriodBounds { min: Duration::from_secs(10), max: Duration::from_secs(6000) };
        let raw = pbjson_types::Duration { seconds, nanos };
        match period_from_proto("period", Some(raw), bounds) {
            Ok(p) => prop_assert!(nanos == 0 && (10..=6000).contains(&i64::from(p.seconds())) && i64::from(p.seconds()) == seconds),
            Err(_) => prop_assert!(nanos != 0 || !(10..=6000).contains(&seconds)),
        }
    }

    #[test]
    fn request_json_decoding_never_panics(text in prop_oneof![
        "\\PC{0,60}",
        r#"\{"(url|period|email|password|urlId|url_id|pageSize|page_token|startTime|id)": ?("[^"]{0,12}"|-?[0-9]{1,25}(\.[0-9]{0,12})?s?|true|null|\[\]|\{\})\}"#,
    ]) {
        let _ = serde_json::from_str::<pb::AddUrlRequest>(&text);
        let _ = serde_json::from_str::<pb::RegisterRequest>(&text);
        let _ = serde_json::from_str::<pb::LoginRequest>(&text);
        let _ = serde_json::from_str::<pb::ListStatusesRequest>(&text);
        let _ = serde_json::from_str::<pb::DeleteUrlRequest>(&text);
        if let Ok(req) = serde_json::from_str::<pb::AddUrlRequest>(&text) {
            // What decodes re-encodes and decodes to the same message.
            let again: pb::AddUrlRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
            prop_assert_eq!(again, req);
        }
    }

    #[test]
    fn url_updates_keep_to_the_rules_whatever_the_mask_and_values(
        name in prop_oneof!["\\PC{0,250}", "[a\\t\\n\\x00-\\x1f\\x7f ]{0,6}"],
        failure in any::<i32>(),
        success in prop_oneof![Just(0i32), 1..=100i32, any::<i32>()],
        paths in proptest::collection::vec(
            prop_oneof!["[a-zA-Z_.]{0,16}", "(name|period|paused|failureThreshold|success_threshold|state|url|id)"],
            0..4,
        ),
    ) {
        let bounds = PeriodBounds {
            min: Duration::from_secs(10),
            max: Duration::from_secs(6000),
        };
        let url = pb::Url {
            id: 1,
            name,
            failure_threshold: failure,
            success_threshold: success,
            ..Default::default()
        };
        let request = pb::UpdateUrlRequest {
            url: Some(url),
            update_mask: Some(pbjson_types::FieldMask { paths }),
        };
        if let Ok((_, update)) = url_update_from_proto(request, bounds) {
            if let Some(Some(name)) = &update.name {
                prop_assert!(!name.is_empty() && name.chars().count() <= 200);
                prop_assert!(!name.chars().any(char::is_control));
            }
            for n in [update.failure_threshold, update.success_threshold].into_iter().flatten() {
                prop_assert!((1..=100).contains(&n));
            }
        }
    }

    #[test]
    fn seed_bodies_never_panic(text in prop_oneof![
        "\\PC{0,60}",
        r#"\{"(URL|url|Url|Period|period|EMAIL|Password)": ?("[^"]{0,12}"|-?[0-9]{1,25}(\.[0-9]{0,3})?|true|null|\[\]|\{\})\}"#,
    ]) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = seed::credentials(&value);
            if let Ok(req) = seed::add_url_request(&value) {
                prop_assert!(req.period.is_none_or(|p| p.seconds > 0 && p.seconds % 60 == 0));
            }
        }
    }
}

/// Inputs found while writing these properties, kept as plain regressions.
#[test]
fn regressions() {
    for raw in [
        "http://",
        "http://@",
        "https://:@/",
        "http://[::1",
        "http://a b",
        "http:\\\\\\\\x",
    ] {
        let _ = TargetUrl::parse("url", raw);
    }
    assert!(TargetUrl::parse("url", "https://user:pass@example.com").is_err());
    // Found by schemathesis: a value over the limit only because of
    // surrounding spaces was accepted after trimming; limits count what was sent.
    let padded = format!("   https://example.com/{}   ", "a".repeat(2025));
    assert!(padded.chars().count() > 2048 && padded.trim().chars().count() <= 2048);
    assert!(TargetUrl::parse("url", &padded).is_err());
    let padded_email = format!("{}a@example.com", " ".repeat(320));
    assert!(Email::parse("email", &padded_email).is_err());
    assert!(TargetUrl::parse("url", "javascript://example.com").is_err());
}
