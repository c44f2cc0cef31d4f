//! An attacker with no account cannot lock an owner out of theirs.
//!
//! Its own test binary: it keeps argon2 busy for a minute, and test
//! binaries run one after another, so it slows no other test. The attacker
//! sends wrong passwords for the owner's email continuously for 60 s, each
//! from a new loopback address (127.0.0.2, 127.0.0.3, … are distinct
//! peers); the owner logs in from 127.0.0.1 with the right password every
//! 250 ms. The owner must succeed on at least 99% of tries, and the
//! attacker must be throttled: one guess per fresh address while the
//! account is under attack, every repeat refused before any hashing.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use monitor::{app::App, config::Settings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery";

fn peer(n: u32) -> IpAddr {
    // 127.0.0.2 onwards, across the whole of 127/8.
    IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + n))
}

async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> u16 {
    client
        .post(format!("{base}/v1/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_cycling_addresses_cannot_lock_the_owner_out() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(tmp.path());
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    settings.prober.enabled = false;
    let app = App::build(settings).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let owner = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let email = "owner@example.com";
    let res = owner
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (guesses, refused, peers) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let attacker = {
        let (stop, guesses, refused, peers, base) = (
            stop.clone(),
            guesses.clone(),
            refused.clone(),
            peers.clone(),
            base.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let client = reqwest::Client::builder()
                    .local_address(peer(n))
                    .build()
                    .unwrap();
                peers.fetch_add(1, Ordering::Relaxed);
                // Two guesses from each address: the second shows a peer
                // that failed on the account is refused while it is locked.
                for _ in 0..2 {
                    match login(&client, &base, email, "not the password").await {
                        401 => guesses.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("the attacker got {other}"),
                    };
                }
                n += 1;
            }
        })
    };

    let (mut tries, mut ok) = (0u32, 0u32);
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < end {
        tries += 1;
        if login(&owner, &base, email, PASSWORD).await == 200 {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    attacker.await.unwrap();
    let (guesses, refused, peers) = (
        guesses.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        peers.load(Ordering::Relaxed),
    );
    println!(
        "owner: {ok} of {tries} logins succeeded; attacker: {peers} addresses, \
         {guesses} guesses checked (401), {refused} refused (429)"
    );
    assert!(
        f64::from(ok) >= 0.99 * f64::from(tries),
        "the owner got in {ok} times of {tries}"
    );
    // Past the account's first burst, one guess per fresh address: the
    // second from each address is refused before any hashing.
    assert!(
        guesses <= peers + 5,
        "{guesses} guesses from {peers} addresses"
    );
    assert!(
        refused + 5 >= peers,
        "only {refused} refusals for {peers} addresses"
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
