//! Raw statuses in fewer bytes, and on Postgres partitioned by day of
//! `due_at`, so retention drops whole days instead of deleting rows.
//!
//! A status row cost ~225 bytes on Postgres (heap and four indexes). Now:
//! - no surrogate `id`: `(url_id, due_at)` was already unique (the flush's
//!   deduplication key); it is the primary key, and the only index. Pages
//!   of ListStatuses are cut by `due_at`, so the `(url_id, probed_at, id)`
//!   index goes, and retention needs no `probed_at` index (Postgres drops
//!   partitions; SQLite deletes by `rowid`, which grows with inserts);
//! - `probed_at` is kept as `probed_after_us`, microseconds after `due_at`
//!   (int4: ±35 minutes; the prober never starts a probe that late);
//! - `tls_not_after` as `tls_remaining_s`, seconds the certificate had left
//!   when the probe was due (int4: ±68 years);
//! - `status_code` and `latency_micros` narrowed to int2 and int4 (a
//!   latency is bounded by the probe's timeout, at most minutes).
//!
//! Postgres: `statuses` is `PARTITION BY RANGE (due_at)`, one partition per
//! UTC day named `statuses_YYYYMMDD`, created by `statuses_partition(day)`
//! (idempotent; an advisory lock serializes concurrent creators). The flush
//! calls it for the days of each batch before its transaction, and the
//! retention pass for today and the next two days; the retention pass drops
//! the partitions whose whole day is past retention.
//!
//! Existing rows are copied, converted, into the new table in the
//! migration's transaction (a large table takes a while: the upgrade's one
//! rewrite). `down` converts back.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The partitioned table, its partition function, and the copy (Postgres).
const POSTGRES_UP: &str = r"
ALTER TABLE statuses RENAME TO statuses_before_18;
ALTER INDEX statuses_pkey RENAME TO statuses_before_18_pkey;
ALTER INDEX statuses_url_id_due_at_key RENAME TO statuses_before_18_key;
CREATE TABLE statuses (
    url_id bigint NOT NULL,
    due_at timestamptz NOT NULL,
    probed_after_us integer NOT NULL,
    latency_micros integer NOT NULL,
    status_code smallint NOT NULL,
    verdict smallint,
    tls_remaining_s integer,
    error_kind smallint,
    error_message text,
    failed_assertions text,
    CONSTRAINT statuses_url_id_due_at_key PRIMARY KEY (url_id, due_at)
) PARTITION BY RANGE (due_at);

CREATE FUNCTION statuses_partition(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := 'statuses_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('monitor.statuses_partition'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF statuses FOR VALUES FROM (%L) TO (%L)',
        name,
        to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
    );
END
$$;

SELECT statuses_partition(span.first + i)
FROM (SELECT (least(min(due_at), now() - interval '3 days') AT TIME ZONE 'UTC')::date AS first,
             (greatest(max(due_at), now()) AT TIME ZONE 'UTC')::date + 2 AS last
      FROM statuses_before_18) AS span,
     generate_series(0, span.last - span.first) AS i;

INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict,
                      tls_remaining_s, error_kind, error_message, failed_assertions)
SELECT url_id, due_at,
       greatest(least(round(extract(epoch FROM probed_at - due_at) * 1000000), 2147483647), -2147483648)::integer,
       least(latency_micros, 2147483647)::integer,
       least(status_code, 32767)::smallint,
       verdict,
       CASE WHEN tls_not_after IS NOT NULL THEN
         greatest(least(floor(extract(epoch FROM tls_not_after)) - floor(extract(epoch FROM due_at)),
                        2147483647), -2147483648)::integer
       END,
       error_kind, error_message, failed_assertions
FROM statuses_before_18;
DROP TABLE statuses_before_18;
";

/// Back to one table with an `id` (Postgres).
const POSTGRES_DOWN: &str = r"
ALTER TABLE statuses RENAME TO statuses_from_18;
ALTER INDEX statuses_url_id_due_at_key RENAME TO statuses_from_18_key;
CREATE TABLE statuses (
    id bigserial PRIMARY KEY,
    url_id bigint NOT NULL,
    due_at timestamptz NOT NULL,
    probed_at timestamptz NOT NULL,
    status_code integer NOT NULL,
    latency_micros bigint NOT NULL,
    error_kind smallint,
    error_message text,
    verdict smallint,
    failed_assertions text,
    tls_not_after timestamptz,
    CONSTRAINT statuses_url_id_due_at_key UNIQUE (url_id, due_at)
);
CREATE INDEX statuses_url_id_probed_at_idx ON statuses (url_id, probed_at, id);
CREATE INDEX statuses_probed_at_idx ON statuses (probed_at);
INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind,
                      error_message, verdict, failed_assertions, tls_not_after)
SELECT url_id, due_at, due_at + probed_after_us * interval '1 microsecond', status_code,
       latency_micros, error_kind, error_message, verdict, failed_assertions,
       date_trunc('second', due_at) + tls_remaining_s * interval '1 second'
FROM statuses_from_18 ORDER BY due_at, url_id;
DROP TABLE statuses_from_18;
DROP FUNCTION statuses_partition(date);
";

/// SQLite: the same columns, one table, its unique key the only index.
/// Times are SQLite's text; `unixepoch(…, 'subsec')` reads them to the
/// millisecond (older rows' probe times lose their microseconds).
const SQLITE_UP: &str = r"
CREATE TABLE statuses_after_18 (
    url_id integer NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
    due_at timestamp_with_timezone_text NOT NULL,
    probed_after_us integer NOT NULL,
    latency_micros integer NOT NULL,
    status_code integer NOT NULL,
    verdict integer,
    tls_remaining_s integer,
    error_kind integer,
    error_message text,
    failed_assertions text
);
INSERT INTO statuses_after_18 (url_id, due_at, probed_after_us, latency_micros, status_code,
                               verdict, tls_remaining_s, error_kind, error_message, failed_assertions)
SELECT url_id, due_at,
       CAST(round((unixepoch(probed_at, 'subsec') - unixepoch(due_at, 'subsec')) * 1000000) AS integer),
       latency_micros, status_code, verdict,
       unixepoch(tls_not_after) - unixepoch(due_at),
       error_kind, error_message, failed_assertions
FROM statuses ORDER BY id;
DROP TABLE statuses;
ALTER TABLE statuses_after_18 RENAME TO statuses;
CREATE UNIQUE INDEX statuses_url_id_due_at_key ON statuses (url_id, due_at);
";

/// SQLite: back to the table with an `id`. Times come back as SQLite
/// writes them (`strftime`), which sqlx reads as the same instants.
const SQLITE_DOWN: &str = r"
CREATE TABLE statuses_before_18 (
    id integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    url_id integer NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
    due_at timestamp_with_timezone_text NOT NULL,
    probed_at timestamp_with_timezone_text NOT NULL,
    status_code integer NOT NULL,
    latency_micros integer NOT NULL,
    error_kind integer,
    error_message text,
    verdict integer,
    failed_assertions text,
    tls_not_after timestamp_with_timezone_text
);
INSERT INTO statuses_before_18 (url_id, due_at, probed_at, status_code, latency_micros, error_kind,
                                error_message, verdict, failed_assertions, tls_not_after)
SELECT url_id, due_at,
       strftime('%Y-%m-%dT%H:%M:%f+00:00', unixepoch(due_at, 'subsec') + probed_after_us / 1000000.0, 'unixepoch'),
       status_code, latency_micros, error_kind, error_message, verdict, failed_assertions,
       CASE WHEN tls_remaining_s IS NOT NULL THEN
         strftime('%Y-%m-%dT%H:%M:%S+00:00', unixepoch(due_at) + tls_remaining_s, 'unixepoch') END
FROM statuses ORDER BY rowid;
DROP TABLE statuses;
ALTER TABLE statuses_before_18 RENAME TO statuses;
CREATE UNIQUE INDEX statuses_url_id_due_at_key ON statuses (url_id, due_at);
CREATE INDEX statuses_url_id_probed_at_idx ON statuses (url_id, probed_at, id);
CREATE INDEX statuses_probed_at_idx ON statuses (probed_at);
";

async fn run(manager: &SchemaManager<'_>, postgres: &str, sqlite: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => postgres,
        _ => sqlite,
    };
    db.execute_unprepared(sql).await.map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
