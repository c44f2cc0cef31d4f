//! argon2id hashing with the OWASP parameters (19 MiB, 2 passes, 1 lane),
//! which are the argon2 crate's defaults. Every call runs on the blocking
//! pool: a hash takes tens of milliseconds of CPU and must not stall the
//! runtime's workers.
//!
//! At most one hash per core runs at once (a semaphore): more would only
//! share the same cores, and each holds 19 MiB, so a flood of Register and
//! Login calls waits in line instead of exhausting memory or thrashing the
//! caches.

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Context;
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

use crate::domain::Password;

/// Verified when the email is unknown, so that an unknown email and a wrong
/// password take the same time and cannot be told apart.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_now(b"not a real password; only here to spend the same time")
        .expect("hashing a constant cannot fail")
});

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

fn verify_now(password: &[u8], phc: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
    Ok(Argon2::default().verify_password(password, &parsed).is_ok())
}

/// One permit per core.
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
    )
});

/// Hashes running now, and the most ever at once (for tests).
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` on the blocking pool once a core is free for it.
async fn on_a_core<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let _permit = HASHING
        .acquire()
        .await
        .context("hashing semaphore closed")?;
    tokio::task::spawn_blocking(move || {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
        let out = work();
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await
    .context("password hashing task failed")?
}

/// The most hashes that ever ran at once in this process.
pub fn most_at_once() -> usize {
    MOST_AT_ONCE.load(Ordering::SeqCst)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: Password) -> anyhow::Result<String> {
    on_a_core(move || hash_now(password.expose())).await
}

/// Checks a password against a stored hash, or against a dummy hash when
/// there is none (unknown user), always spending one verification.
pub async fn verify(password: Password, stored: Option<String>) -> anyhow::Result<bool> {
    on_a_core(move || match stored {
        Some(phc) => verify_now(password.expose(), &phc),
        None => verify_now(password.expose(), &DUMMY_HASH).map(|_| false),
    })
    .await
}

/// Computes the dummy hash now, so the first unknown-user login is not slower.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse("password", s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn hash_is_argon2id_with_owasp_parameters() {
        let phc = hash(pw("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_hashes_runs_at_most_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let flood: Vec<_> = (0..cores * 4)
            .map(|_| tokio::spawn(hash(pw("correct horse"))))
            .collect();
        for h in flood {
            h.await.unwrap().unwrap();
        }
        let most = most_at_once();
        assert!(
            most >= 1 && most <= cores,
            "{most} hashes at once on {cores} cores"
        );
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_only() {
        let phc = hash(pw("correct horse")).await.unwrap();
        assert!(
            verify(pw("correct horse"), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!verify(pw("wrong horse!"), Some(phc)).await.unwrap());
        assert!(!verify(pw("correct horse"), None).await.unwrap());
    }
}
