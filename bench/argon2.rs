//! The raw argon2id rate on this machine: the baseline for Register and
//! Login RPC/s. The service's parameters (the argon2 crate's defaults, OWASP:
//! 19 MiB, t=2, p=1), one thread per core, for a fixed time.
//!
//!     cargo bench --bench argon2 -- --seconds 5

use std::time::{Duration, Instant};

use argon2::{
    Argon2, PasswordHasher,
    password_hash::{SaltString, rand_core::OsRng},
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seconds = 5.0;
    while let Some(a) = args.next() {
        if a == "--seconds" {
            seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let run = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < run {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"correct horse battery", &salt)
                        .expect("hashing");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let hashes: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    #[allow(clippy::cast_precision_loss)]
    let rate = hashes as f64 / started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"threads": threads, "hashes": hashes, "hashes_per_s": rate})
    );
}
