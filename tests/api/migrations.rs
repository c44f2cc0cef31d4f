//! Migrations applied over data an older schema holds.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::helpers::{Backend, TestDatabase};

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

async fn url_counts(db: &DatabaseConnection) -> Vec<(String, i32)> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT email, url_count FROM users ORDER BY email",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
        )
    })
    .collect()
}

async fn the_quota_counter_starts_from_the_urls_users_already_have(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()),
        Backend::Postgres => database.url.clone(),
    };
    let db = Database::connect(&url).await.unwrap();
    // The schema before the counter, with users who already monitor URLs.
    Migrator::up(&db, Some(2)).await.unwrap();
    exec(
        &db,
        "INSERT INTO users (email, password_hash, created_at) VALUES
         ('a@example.com', 'x', '2026-11-20T00:00:00Z'),
         ('b@example.com', 'x', '2026-11-20T00:00:00Z')",
    )
    .await;
    exec(
        &db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at)
         SELECT id, 'https://example.com/' || n, 60, '2026-11-20T00:00:00Z'
         FROM users, (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3) AS three
         WHERE email = 'a@example.com'",
    )
    .await;
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        url_counts(&db).await,
        vec![("a@example.com".into(), 3), ("b@example.com".into(), 0)]
    );
    db.close().await.ok();
}

crate::on_both_backends!(the_quota_counter_starts_from_the_urls_users_already_have);
