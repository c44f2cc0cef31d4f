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
    LazyLock, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};

use crate::domain::Password;

/// Verified when the email is unknown, so that an unknown email and a wrong
/// password take the same time and cannot be told apart.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_now(b"not a real password; only here to spend the same time")
        .expect("hashing a constant cannot fail")
});

/// Argon2's working memory, one 19 MiB buffer per hash that may run at once
/// (at most one per core), kept and reused. Allocating it for every hash, as
/// `Argon2::hash_password` does, costs page faults and zeroing each time,
/// and on a server whose blocking threads come and go it measured ~30%
/// slower than the same hashes on two fixed threads (bench/argon2.rs).
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` with a working-memory buffer of at least `blocks` blocks.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let pooled = MEMORY.lock().ok().and_then(|mut m| m.pop());
    let mut memory = match pooled {
        Some(m) if m.len() >= blocks => m,
        _ => vec![Block::default(); blocks],
    };
    let out = f(&mut memory);
    if let Ok(mut pool) = MEMORY.lock() {
        pool.push(memory);
    }
    out
}

/// The parameters new hashes use: the argon2 crate's defaults, which are
/// OWASP's (argon2id, v19, m=19 MiB, t=2, p=1, 32-byte output).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

fn raw_hash(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    len: usize,
) -> anyhow::Result<Output> {
    let blocks = argon.params().block_count();
    with_memory(blocks, |memory| {
        Output::init_with(len, |out| {
            argon
                .hash_password_into_with_memory(password, salt, out, memory)
                .map_err(argon2::password_hash::Error::from)
        })
    })
    .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon = hasher();
    let output = raw_hash(&argon, password, salt_bytes, Params::DEFAULT_OUTPUT_LEN)?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Checks `password` against a PHC string, with the parameters the string
/// names (so hashes made with older parameters still verify). The
/// comparison is constant-time (`Output`'s `PartialEq`).
fn verify_now(password: &[u8], phc: &str) -> anyhow::Result<bool> {
    let malformed =
        |e: argon2::password_hash::Error| anyhow::anyhow!("stored hash is malformed: {e}");
    let parsed = PasswordHash::new(phc).map_err(malformed)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
        .map_err(|e| malformed(e.into()))?;
    let params = Params::try_from(&parsed).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(anyhow::anyhow!(
            "stored hash is malformed: no salt or no hash"
        ));
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(malformed)?;
    let argon = Argon2::new(algorithm, version, params);
    let actual = raw_hash(&argon, password, salt_bytes, expected.len())?;
    Ok(actual == expected)
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

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Ours verify with the crate's verifier...
        let ours = hash_now(b"correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // ...and the crate's (what older rows hold), and other parameters,
        // verify with ours.
        let salt = SaltString::generate(&mut OsRng);
        for argon in [
            Argon2::default(),
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8192, 3, 1, None).unwrap(),
            ),
        ] {
            let theirs = argon
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
            assert!(verify_now(b"correct horse", &theirs).unwrap(), "{theirs}");
            assert!(!verify_now(b"correct horse!", &theirs).unwrap(), "{theirs}");
        }
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error_not_a_match() {
        let good = hash_now(b"correct horse").unwrap();
        for bad in [
            String::new(),
            "not a hash".into(),
            good.replace("argon2id", "scrypt"),
            good.rsplit_once('$').unwrap().0.to_owned(),
        ] {
            assert!(verify_now(b"correct horse", &bad).is_err(), "{bad:?}");
        }
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

    /// Threads hashing at once take and return pooled buffers without
    /// mixing them up: every hash still verifies.
    #[test]
    fn concurrent_hashes_through_the_memory_pool_all_verify() {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..30 {
                        let h = hash_now(b"correct horse").unwrap();
                        assert!(verify_now(b"correct horse", &h).unwrap());
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
}
