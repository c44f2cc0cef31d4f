//! Persistence: sea-orm entities, the connection, and migrations.
//!
//! The same code runs on SQLite (the embedded default) and Postgres. Every
//! SQL statement and every difference between the two backends lives here,
//! behind functions named for what they do; services and loops call them
//! and get domain records back (`crate::domain`), never entity models or
//! rows. The entities mirror the tables `migrations/` creates.

pub mod certificates;
pub mod channels;
pub mod deliveries;
pub mod incidents;
pub mod maintenance;
pub mod outcomes;
pub mod rollups;
pub mod schedule;
pub mod status_pages;
pub mod statuses;
pub mod url_update;
pub mod urls;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr,
    Statement, TransactionTrait,
};

/// Any number: identifies the lock that serialises migrations across
/// instances starting together on one Postgres.
const MIGRATION_LOCK_ID: i64 = 7_400_001;

/// The SQLite WAL file is truncated to this after a checkpoint.
const SQLITE_WAL_LIMIT_BYTES: u64 = 64 << 20;

/// Opens the database at `url` (`postgres://…` or `sqlite://…`) with at
/// most `max_connections` pooled, and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let postgres = url.starts_with("postgres");
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                // Memory per pooled connection, bounded: SQLite's page cache
                // (its default, 2 MiB) and sqlx's cache of prepared
                // statements (at most 100; every statement text is fixed,
                // none grows with a batch). The WAL is checkpointed every
                // 1,000 pages (SQLite's default) and cut back to this size
                // after each checkpoint.
                .statement_cache_capacity(100)
                .pragma("journal_size_limit", SQLITE_WAL_LIMIT_BYTES.to_string())
        });
    if postgres {
        check_postgres(url).await?;
    }
    let db = Database::connect(options).await.with_context(|| {
        format!(
            "connecting to the {} database",
            if postgres { "Postgres" } else { "SQLite" }
        )
    })?;
    migrate(&db).await.context("applying database migrations")?;
    Ok(db)
}

/// Opens one connection to the Postgres `url` before the pool does, so that
/// a setting that cannot work (nothing listening, no such database, a
/// refused login) stops start-up at once with one message naming the
/// address, the database and the user (never the password) and what to
/// do, instead of the pool's retries and "pool timed out".
async fn check_postgres(url: &str) -> Result<(), crate::error::SettingsError> {
    use std::str::FromStr;

    use sqlx::{ConnectOptions as _, postgres::PgConnectOptions};
    let bad = |reason: String| crate::error::SettingsError::new("DATABASE_URL", reason);
    let options =
        PgConnectOptions::from_str(url).map_err(|e| bad(format!("cannot be parsed: {e}")))?;
    let host = options.get_host().to_string();
    let port = options.get_port();
    let user = options.get_username().to_string();
    let database = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_string();
    let at = format!("Postgres at {host}:{port} (database {database:?}, user {user:?})");
    let attempt = tokio::time::timeout(Duration::from_secs(5), options.connect()).await;
    let error = match attempt {
        Ok(Ok(connection)) => {
            let _ = sqlx::Connection::close(connection).await;
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(_) => {
            return Err(bad(format!(
                "{at} did not answer within 5 s; check the host and port and that no firewall drops the connection"
            )));
        }
    };
    let code = match &error {
        sqlx::Error::Database(e) => e.code().map(|c| c.to_string()),
        _ => None,
    };
    let reason = match (&error, code.as_deref()) {
        (sqlx::Error::Io(e), _) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "{at}: connection refused: nothing listens there; start Postgres or fix the host and port"
        ),
        (sqlx::Error::Io(e), _) => format!("{at}: cannot connect: {e}; check the host and port"),
        (_, Some("3D000")) => format!(
            "{at}: the database does not exist; create it with `createdb -h {host} -p {port} -U {user} {database}`"
        ),
        (_, Some("28P01" | "28000")) => format!(
            "{at}: the login was refused (wrong password, or pg_hba.conf does not allow this user from here); fix the user and password in DATABASE_URL"
        ),
        (sqlx::Error::Tls(e), _) => format!("{at}: TLS failed: {e}; check sslmode in DATABASE_URL"),
        (sqlx::Error::Database(e), _) => format!("{at}: refused: {}", e.message()),
        (e, _) => format!("{at}: cannot connect: {e}"),
    };
    Err(bad(reason))
}

/// Applies pending migrations. On Postgres an advisory lock held by the
/// migration's transaction makes concurrent start-ups take turns.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"
        ))
        .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

/// Proves the database takes writes (readiness): updates the one row of
/// `health_check` with `now_ms`. A read-only SQLite file or a Postgres
/// that refuses writes fails here while a ping still succeeds.
pub async fn check_writable(db: &DatabaseConnection, now_ms: i64) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "UPDATE health_check SET checked_ms = $1 WHERE id = 1",
        _ => "UPDATE health_check SET checked_ms = ? WHERE id = 1",
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [now_ms.into()],
    ))
    .await?;
    Ok(())
}

/// A statement written with Postgres' numbered parameters (`$n`) for the
/// database at hand: SQLite takes the same numbers after `?`.
pub(crate) fn numbered(backend: DbBackend, postgres: &str) -> String {
    match backend {
        DbBackend::Postgres => postgres.to_owned(),
        _ => postgres.replace('$', "?"),
    }
}

/// The condition "`column` is one of `ids`" with its one parameter, `$n`
/// (write the statement for Postgres and pass it through [`numbered`]): an
/// array on Postgres, a JSON list on SQLite.
pub(crate) fn one_of(
    backend: DbBackend,
    column: &str,
    n: usize,
    ids: &[i64],
) -> (String, sea_orm::Value) {
    match backend {
        DbBackend::Postgres => (format!("{column} = ANY(${n})"), ids.to_vec().into()),
        _ => (
            format!("{column} IN (SELECT value FROM json_each(${n}))"),
            serde_json::to_string(ids).unwrap_or_default().into(),
        ),
    }
}

/// Deletes `user`'s row `id` of `table` (rows that hang off it go by
/// their foreign keys). `false`: the user has no such row. `table` is one
/// of the store's own table names, never input.
pub(crate) async fn delete_owned(
    db: &DatabaseConnection,
    table: &'static str,
    user: crate::domain::UserId,
    id: i64,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!("DELETE FROM {table} WHERE id = $1 AND user_id = $2"),
            ),
            [id.into(), user.0.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Begins a transaction that reads before it writes. On SQLite it takes the
/// write lock at `BEGIN` (`IMMEDIATE`, waiting its turn like any writer): a
/// deferred transaction that read first holds a snapshot, and when another
/// connection has written since, SQLite refuses to turn it into a writer
/// at once ("database is locked", without waiting), which failed a client's
/// valid request with INTERNAL under load.
pub(crate) async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..sea_orm::TransactionOptions::default()
    })
    .await
}

/// Begins a transaction that first takes `user`'s row (Postgres; SQLite's
/// write lock is taken by the update too), then counts the user's rows of
/// `table`: two concurrent adds checked against a quota in it cannot both
/// pass. `table` is one of the store's own table names, never input.
pub(crate) async fn begin_counting(
    db: &DatabaseConnection,
    user: crate::domain::UserId,
    table: &'static str,
) -> Result<(sea_orm::DatabaseTransaction, i64), DbErr> {
    use sea_orm::{Statement, TransactionTrait};
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql("UPDATE users SET url_count = url_count WHERE id = $1"),
        [user.0.into()],
    ))
    .await?;
    let count: i64 = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(&format!(
                "SELECT count(*) AS n FROM {table} WHERE user_id = $1"
            )),
            [user.0.into()],
        ))
        .await?
        .map_or(Ok(0), |row| row.try_get("", "n"))?;
    Ok((txn, count))
}

/// Whether an error is a unique-constraint violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The connection pool's size and how many of its connections are idle.
pub fn pool_usage(db: &DatabaseConnection) -> Option<(u32, u32)> {
    let (size, idle) = match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return None,
    };
    Some((size, u32::try_from(idle).unwrap_or(size)))
}

/// SQLite: copies the write-ahead log into the database and truncates it to
/// zero bytes, waiting (up to the busy timeout) for readers of older
/// snapshots. Postgres: nothing to do.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await?;
    }
    Ok(())
}
