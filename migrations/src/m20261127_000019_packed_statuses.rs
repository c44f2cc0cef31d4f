//! Closed days of raw statuses packed into one row per URL (Postgres).
//!
//! A status in a day partition costs ~98 bytes even with its index rebuilt
//! full: a heap tuple (a 24-byte header and a 4-byte line pointer for ~40
//! bytes of data) and a btree entry (an 8-byte header and a 4-byte line
//! pointer for the 16-byte key). Once its day is over, nothing needs a
//! status as its own row: a day's statuses of one URL are read together
//! (pages of ListStatuses, minute buckets), written no more (late writes
//! aside) and dropped together. So a closed day is packed: one row per URL
//! in `statuses_packed`, each field an array in due order, ~22 bytes a
//! status plus TOAST's compression of whatever repeats.
//!
//! - `statuses_packed` is `PARTITION BY RANGE (day)`, one partition per UTC
//!   day (`statuses_packed_YYYYMMDD`), dropped by retention with its day.
//! - `due_ms` holds each due time as milliseconds after the day's start
//!   (due times are whole milliseconds: the scheduler's grid). A nullable
//!   column's array is NULL when the URL had no value that day (`unnest`
//!   reads a NULL array as NULLs).
//! - `statuses_packed_days` lists the packed days: the flush checks a row
//!   for such a day against the packed one before it inserts it (a
//!   redelivery of a packed status is not stored or counted twice).
//! - `statuses_pack(day)` packs one day in its caller's transaction: it
//!   locks the day's partition against writes, fills a new table from it,
//!   attaches that as the packed day, records the day and empties the
//!   partition (it is dropped with its day). Readers see the day whole in
//!   one place or the other. Only the day's partition is locked, never
//!   `statuses` itself: reads and the flush go on, and a writer waiting
//!   for that day (DeleteUrl, a late status) goes on once it is packed.
//!   Returns the packed rows (URLs), -1 when the day has no partition or
//!   is packed already, or -2 when another packer is at work (a
//!   transaction lock: one packer at a time, and a pass that finds it busy
//!   leaves it the rest of the work).
//!   A status written for the day after that lands in the emptied
//!   partition and is read from there.
//!
//! SQLite is not packed: one table, as migration 18 left it.

use sea_orm_migration::prelude::*;

use crate::m20261127_000017_statuses_without_url_key::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r"
CREATE TABLE statuses_packed (
    url_id bigint NOT NULL,
    day date NOT NULL,
    due_ms integer[] NOT NULL,
    probed_after_us integer[] NOT NULL,
    latency_micros integer[] NOT NULL,
    status_code smallint[] NOT NULL,
    verdict smallint[],
    tls_remaining_s integer[],
    error_kind smallint[],
    error_message text[],
    failed_assertions text[],
    CONSTRAINT statuses_packed_pkey PRIMARY KEY (url_id, day)
) PARTITION BY RANGE (day);

CREATE TABLE statuses_packed_days (day date PRIMARY KEY);

CREATE FUNCTION statuses_pack(day date) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    hot text := 'statuses_' || to_char(day, 'YYYYMMDD');
    packed text := 'statuses_packed_' || to_char(day, 'YYYYMMDD');
    start timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    n bigint;
BEGIN
    -- One packer at a time: another instance's pass finds it busy (-2)
    -- and leaves the rest of its pass to it; the checks below see what
    -- the last one did.
    IF NOT pg_try_advisory_xact_lock(hashtext('monitor.statuses_pack')) THEN
        RETURN -2;
    END IF;
    IF to_regclass(hot) IS NULL
       OR EXISTS (SELECT 1 FROM statuses_packed_days d WHERE d.day = statuses_pack.day) THEN
        RETURN -1;
    END IF;
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', hot);
    EXECUTE format('DROP TABLE IF EXISTS %I', packed);
    EXECUTE format('CREATE TABLE %I (LIKE statuses_packed INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', packed);
    EXECUTE format(
        'INSERT INTO %I (url_id, day, due_ms, probed_after_us, latency_micros, status_code, verdict, '
        '                tls_remaining_s, error_kind, error_message, failed_assertions) '
        'SELECT url_id, %L::date, '
        '       array_agg((extract(epoch FROM due_at - %L::timestamptz) * 1000)::integer ORDER BY due_at), '
        '       array_agg(probed_after_us ORDER BY due_at), '
        '       array_agg(latency_micros ORDER BY due_at), '
        '       array_agg(status_code ORDER BY due_at), '
        '       CASE WHEN count(verdict) > 0 THEN array_agg(verdict ORDER BY due_at) END, '
        '       CASE WHEN count(tls_remaining_s) > 0 THEN array_agg(tls_remaining_s ORDER BY due_at) END, '
        '       CASE WHEN count(error_kind) > 0 THEN array_agg(error_kind ORDER BY due_at) END, '
        '       CASE WHEN count(error_message) > 0 THEN array_agg(error_message ORDER BY due_at) END, '
        '       CASE WHEN count(failed_assertions) > 0 THEN array_agg(failed_assertions ORDER BY due_at) END '
        'FROM %I GROUP BY url_id',
        packed, day, start, hot);
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (url_id, day)', packed, packed || '_pkey');
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (day = %L::date)', packed, packed || '_day', day);
    EXECUTE format('ALTER TABLE statuses_packed ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   packed, day, day + 1);
    INSERT INTO statuses_packed_days VALUES (day);
    -- Emptied, not dropped: a drop would lock all of `statuses`, and
    -- waiting for that while holding this partition deadlocks with a
    -- writer (DeleteUrl, a late flush) that holds `statuses` and waits for
    -- this partition. Retention drops the empty partition with its day.
    EXECUTE format('TRUNCATE %I', hot);
    RETURN n;
END
$$;
";

/// Packed days go back into day partitions (Postgres).
const POSTGRES_DOWN: &str = r"
SELECT statuses_partition(day) FROM statuses_packed_days;
INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict,
                      tls_remaining_s, error_kind, error_message, failed_assertions)
SELECT p.url_id, (p.day::timestamp AT TIME ZONE 'UTC') + u.due_ms * interval '1 millisecond',
       u.probed_after_us, u.latency_micros, u.status_code, u.verdict, u.tls_remaining_s,
       u.error_kind, u.error_message, u.failed_assertions
FROM statuses_packed p
CROSS JOIN LATERAL unnest(p.due_ms, p.probed_after_us, p.latency_micros, p.status_code, p.verdict,
                          p.tls_remaining_s, p.error_kind, p.error_message, p.failed_assertions)
    AS u(due_ms, probed_after_us, latency_micros, status_code, verdict, tls_remaining_s,
         error_kind, error_message, failed_assertions)
ON CONFLICT (url_id, due_at) DO NOTHING;
DROP FUNCTION statuses_pack(date);
DROP TABLE statuses_packed_days;
DROP TABLE statuses_packed;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, POSTGRES_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, POSTGRES_DOWN).await
    }
}
