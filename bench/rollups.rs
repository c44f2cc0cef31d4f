//! Rollup storage per URL-year, and the history GetUrlStats reads in
//! `bench/run`: fills every URL of a Postgres database with a year of
//! rollups, as the flush would have kept them for one probe a minute (90
//! days of hour buckets, 365 day buckets; minutes are read from the raw
//! statuses), then
//! reports what the `rollups` table (rows, indexes, TOAST) takes per URL.
//!
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/monitor_bench_stats \
//!     cargo bench --bench rollups -- --urls 100
//!
//! URLs are added (to the first user) until there are `--urls`; all are
//! backdated a year. The buckets are built with the flush's own code
//! (`domain::rollup::Bucket`) and written with its statement
//! (`store::rollups::merge_postgres`).

use std::collections::BTreeMap;

use chrono::Utc;
use monitor::{
    config::Settings,
    domain::{
        Verdict,
        rollup::{Bucket, Tier},
    },
    store::rollups,
};
use sea_orm::{ConnectionTrait, Statement};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A latency for probe `n`: ~20-60 ms with a slow tail, deterministic.
fn latency(n: u64) -> u64 {
    let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let base = 20_000 + x % 40_000;
    if x.is_multiple_of(50) {
        base * 10
    } else {
        base
    }
}

/// A bucket of `probes` probes starting at probe number `first`.
fn bucket(first: u64, probes: u64) -> Bucket {
    let mut b = Bucket::default();
    for n in first..first + probes {
        let verdict = if n.is_multiple_of(333) {
            Verdict::Down
        } else {
            Verdict::Up
        };
        b.add(verdict, Some(latency(n)));
    }
    b
}

#[tokio::main]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let urls = arg("--urls", 100);
    let db_url = std::env::var("BENCH_DATABASE_URL")?;
    let tmp = tempfile::tempdir()?;
    let mut settings = Settings::defaults(tmp.path());
    settings.database_url = Some(db_url.clone());
    let db = monitor::app::open_database(&settings).await?;
    let sql = |s: String| Statement::from_string(db.get_database_backend(), s);
    let now = Utc::now().timestamp_millis();
    let year_ago = now - 366 * 86_400_000;
    db.execute_unprepared(
        "INSERT INTO users (email, password_hash, created_at)
         SELECT 'rollups@example.com', 'x', now() WHERE NOT EXISTS (SELECT 1 FROM users)",
    )
    .await?;
    db.execute_raw(sql(format!(
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms)
         SELECT (SELECT min(id) FROM users), 'https://example.com/rollups/' || g, 60, now(), 0
         FROM generate_series((SELECT count(*) FROM urls) + 1, {urls}) g"
    )))
    .await?;
    db.execute_raw(sql(format!(
        "UPDATE urls SET created_at = to_timestamp({year_ago} / 1000.0), period_seconds = 60, phase_ms = 0"
    )))
    .await?;
    db.execute_unprepared(
        "DELETE FROM url_periods;
         INSERT INTO url_periods (url_id, since_ms, period_seconds, phase_ms, paused)
         SELECT id, 0, 60, 0, false FROM urls;
         TRUNCATE rollups",
    )
    .await?;
    let ids: Vec<i64> = db
        .query_all_raw(sql("SELECT id FROM urls ORDER BY id".into()))
        .await?
        .iter()
        .map(|r| r.try_get("", "id"))
        .collect::<Result<_, _>>()?;

    let started = std::time::Instant::now();
    let pool = db.get_postgres_connection_pool();
    for id in &ids {
        let mut buckets = BTreeMap::new();
        // Minute buckets are not stored (read from the raw statuses).
        let tiers = [(Tier::Hour, 90 * 24, 60), (Tier::Day, 365, 1440)];
        for (tier, count, probes) in tiers {
            let last = tier.bucket_of(now);
            for k in 0..count {
                let start = last - (count - k) * tier.width_ms();
                let first = u64::try_from(start / 60_000).unwrap_or(0);
                buckets.insert((*id, tier, start), bucket(first, probes));
            }
        }
        let mut tx = pool.begin().await?;
        rollups::merge_postgres(&mut tx, buckets).await?;
        tx.commit().await?;
    }
    let fill_s = started.elapsed().as_secs_f64();
    // The first URL's last 48 hours of raw statuses, one a minute: what
    // GetUrlStats reads minute buckets from.
    if let Some(first) = ids.first() {
        let minute_ago = now - now.rem_euclid(60_000);
        db.execute_raw(sql(format!(
            "INSERT INTO statuses (url_id, due_at, probed_after_us, status_code, latency_micros)
             SELECT {first}, to_timestamp(({minute_ago} - g * 60000) / 1000.0), 2000,
                    CASE WHEN g % 333 = 0 THEN 500 ELSE 200 END, 20000 + (g * 7919) % 40000
             FROM generate_series(1, 2880) g ON CONFLICT DO NOTHING"
        )))
        .await?;
    }
    db.execute_unprepared("VACUUM ANALYZE rollups").await?;
    let row = db
        .query_one_raw(sql(
            "SELECT pg_total_relation_size('rollups') AS bytes, count(*) AS rows, \
             avg(octet_length(sketch))::float8 AS sketch_bytes FROM rollups"
                .into(),
        ))
        .await?
        .expect("one row");
    let bytes: i64 = row.try_get("", "bytes")?;
    let rows: i64 = row.try_get("", "rows")?;
    let sketch: f64 = row.try_get("", "sketch_bytes")?;
    let n = ids.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "urls": ids.len(),
            "first_url_id": ids.first(),
            "rows": rows,
            "rows_per_url": rows as f64 / n,
            "bytes_total": bytes,
            "bytes_per_url_year": bytes as f64 / n,
            "mean_sketch_bytes": sketch,
            "fill_seconds": fill_s,
        })
    );
    Ok(())
}
