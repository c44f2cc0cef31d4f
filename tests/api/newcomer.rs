//! What a newcomer hits first (issue 19): start-up errors that say what
//! failed and what to do, with exit 2 for a setting that cannot work and
//! nothing written before it is known; settings errors that name the
//! environment variable; logs without colour codes off a terminal.

use std::{process::Stdio, time::Instant};

use crate::{
    binary::monitor_command,
    helpers::{postgres_admin_url, postgres_skipped},
};

/// Runs the binary to its exit; (exit code, stdout, stderr).
fn run_to_exit(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("running the monitor binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn postgres_url(database: &str) -> String {
    let admin = postgres_admin_url();
    let (base, _) = admin.rsplit_once('/').expect("a database in the admin URL");
    format!("{base}/{database}")
}

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn a_missing_postgres_database_is_named_with_the_createdb_command() {
    if postgres_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, out, err) = run_to_exit(
        monitor_command(dir.path())
            .env("DATABASE_URL", postgres_url("no_such_database_i19"))
            .env("MONITOR_TOKEN_KEY", KEY),
    );
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(started.elapsed().as_secs() < 4, "no pool timeout");
    assert!(err.contains("database \"no_such_database_i19\""), "{err}");
    assert!(err.contains("127.0.0.1:5432"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains("createdb -h 127.0.0.1 -p 5432 -U postgres no_such_database_i19"),
        "{err}"
    );
    assert_eq!(
        err.matches("does not exist").count(),
        1,
        "printed once: {err}"
    );
    assert!(!err.contains("at line"), "{err}");
}

#[test]
fn a_closed_postgres_port_is_refused_at_once_with_its_address() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, out, err) = run_to_exit(
        monitor_command(dir.path())
            .env(
                "DATABASE_URL",
                format!("postgres://monitor:hunter2secret@127.0.0.1:{port}/monitor"),
            )
            .env("MONITOR_TOKEN_KEY", KEY),
    );
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(started.elapsed().as_secs() < 4, "no 5 s pool timeout");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("database \"monitor\""), "{err}");
    assert!(!err.contains("hunter2secret"), "never the password: {err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert_eq!(
        err.matches("connection refused").count(),
        1,
        "printed once: {err}"
    );
}

#[test]
fn an_address_in_use_exits_2_before_anything_is_written() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    for var in ["MONITOR_GRPC_ADDR", "MONITOR_HTTP_ADDR"] {
        let (code, out, err) = run_to_exit(monitor_command(&data).env(var, &addr));
        assert_eq!(code, Some(2), "{var}: {out}\n{err}");
        assert!(err.contains(var) && err.contains(&addr), "{err}");
        assert!(err.contains("in use"), "{err}");
        assert!(!data.exists(), "{var}: the data directory was created");
    }
}

#[test]
fn a_bad_setting_names_its_environment_variable_and_booleans_take_yes_and_1() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_to_exit(monitor_command(dir.path()).env("MONITOR_TOKEN_TTL", "soon"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--token-ttl") && err.contains("MONITOR_TOKEN_TTL"),
        "{err}"
    );
    let (code, _, err) =
        run_to_exit(monitor_command(dir.path()).env("MONITOR_ALLOW_PRIVATE_TARGETS", "perhaps"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("MONITOR_ALLOW_PRIVATE_TARGETS"), "{err}");
    // Each boolean spelling is accepted: the server gets past the settings
    // (it stops on the busy port instead, before writing anything).
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for word in ["true", "false", "1", "0", "yes", "no", "YES"] {
        let (code, _, err) = run_to_exit(
            monitor_command(&dir.path().join("unused"))
                .env("MONITOR_ALLOW_PRIVATE_TARGETS", word)
                .env("MONITOR_PROBER", word)
                .env("MONITOR_GRPC_ADDR", busy.local_addr().unwrap().to_string()),
        );
        assert_eq!(code, Some(2), "{word}: {err}");
        assert!(err.contains("MONITOR_GRPC_ADDR"), "{word}: {err}");
    }
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = monitor_command(dir.path())
        .env_remove("NO_COLOR")
        .env("MONITOR_LOG_FORMAT", "pretty")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    crate::binary::terminate(&mut child);
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("serving"), "{text}");
    assert!(!text.contains("\x1b["), "ANSI codes in a pipe: {text:?}");
}
