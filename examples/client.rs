//! Using the library's generated gRPC client from another Rust program:
//! register, log in, add a URL, list it, read its statuses.
//!
//! ```sh
//! cargo run --release &                       # the server, embedded default
//! cargo run --example client -- http://127.0.0.1:50051 https://www.rust-lang.org
//! ```

use monitor::proto::monitor::v1 as pb;
use tonic::Request;

/// Adds `authorization: Bearer <token>` to a request.
fn authed<T>(msg: T, token: &str) -> Result<Request<T>, Box<dyn std::error::Error>> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let target = args
        .next()
        .unwrap_or_else(|| "https://www.rust-lang.org".into());
    // The crate's client: reads and Login are sent again if an instance
    // dies mid-response; writes are sent once.
    let mut client = monitor::client::connect(server).await?;

    let email = format!("example-{}@example.com", std::process::id());
    let password = "correct horse battery".to_owned();
    let user = client
        .register(pb::RegisterRequest {
            email: email.clone(),
            password: password.clone(),
        })
        .await?
        .into_inner();
    let token = client
        .login(pb::LoginRequest { email, password })
        .await?
        .into_inner()
        .token;

    let url = client
        .add_url(authed(
            pb::AddUrlRequest {
                url: target,
                period: Some(pbjson_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                // "200 OK" is not "working": a 2xx answered within a second.
                assertions: vec![
                    pb::Assertion {
                        check: Some(pb::assertion::Check::Status(pb::StatusAssertion {
                            codes: vec!["200-299".into()],
                        })),
                        ..Default::default()
                    },
                    pb::Assertion {
                        severity: pb::AssertionSeverity::Degraded.into(),
                        check: Some(pb::assertion::Check::MaxLatency(pbjson_types::Duration {
                            seconds: 1,
                            nanos: 0,
                        })),
                    },
                ],
            },
            &token,
        )?)
        .await?
        .into_inner()
        .url
        .ok_or("AddUrl returned no URL")?;
    println!(
        "user {} monitors URL {} ({}) every {:?}",
        user.id, url.id, url.url, url.period
    );

    let urls = client
        .list_urls(authed(pb::ListUrlsRequest {}, &token)?)
        .await?
        .into_inner();
    println!("{} URL(s)", urls.urls.len());

    // The first probe runs within a second of AddUrl.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let page = client
        .list_statuses(authed(
            pb::ListStatusesRequest {
                url_id: url.id,
                page_size: 10,
                ..Default::default()
            },
            &token,
        )?)
        .await?
        .into_inner();
    for s in page.statuses {
        println!(
            "status {} in {:?} (error kind {})",
            s.status_code, s.latency, s.error_kind
        );
    }
    Ok(())
}
