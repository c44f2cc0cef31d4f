//! `monitorctl apply` / `export` (monitors as code) against the real
//! server: the real binary, its exit codes and what it prints, and the
//! URLs the server then has.

use std::{path::Path, process::Command};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, prober_settings, spawn_app_with},
    target::Target,
};

/// Runs a command off the runtime: (exit code, stdout, stderr).
async fn run(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server (not probing), and a logged-in monitorctl for `email`, run in
/// its own directory (its files are written there).
struct Ctl {
    server: String,
    dir: tempfile::TempDir,
}

impl Ctl {
    async fn login(app: &TestApp, email: &str) -> Self {
        let ctl = Self {
            server: format!("http://{}", app.addr),
            dir: tempfile::tempdir().unwrap(),
        };
        for step in [["register", email], ["login", email]] {
            let (code, _, err) = ctl.run(&step).await;
            assert_eq!(code, Some(0), "{err}");
        }
        ctl
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitorctl"));
        cmd.args(["--server", &self.server, "--config-dir"])
            .arg(self.dir.path())
            .args(args)
            .current_dir(self.dir.path())
            .env("MONITOR_PASSWORD", PASSWORD);
        cmd
    }

    async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run(self.cmd(args)).await
    }

    /// `run` with these environment variables set.
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied());
        run(cmd).await
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    /// `export`'s output.
    async fn export(&self) -> String {
        let (code, out, err) = self.run(&["export"]).await;
        assert_eq!(code, Some(0), "{err}");
        out
    }
}

async fn app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |s| {
        prober_settings(s);
        s.prober.enabled = false;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_plans_applies_and_a_second_run_changes_nothing() {
    let target = Target::start().await;
    let app = app().await;
    let ctl = Ctl::login(&app, "iac@example.com").await;
    let other = Ctl::login(&app, "other@example.com").await;
    let (code, _, err) = other.run(&["add", &target.url("/theirs")]).await;
    assert_eq!(code, Some(0), "{err}");

    let (api, web) = (target.url("/api"), target.url("/web"));
    ctl.write(
        "monitors.yaml",
        &format!(
            "urls:\n  - name: web\n    url: {web}\n    period: 1m\n  - name: api\n    url: {api}\n    period: 30s\n    failure_threshold: 3\n    assertions:\n      - status=200-299\n      - degraded:latency<500ms\n"
        ),
    );
    // --dry-run: the plan, nothing changed.
    let (code, out, err) = ctl
        .run(&["apply", "-f", "monitors.yaml", "--dry-run"])
        .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!("+ add api: {api}\n+ add web: {web}\ndry run: nothing changed\n")
    );
    assert!(ctl.export().await.contains("urls: []"), "nothing added");

    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("+ add api: {api}\n+ add web: {web}\n")),
        "{out}"
    );
    assert!(
        out.contains("applied: 2 added, 0 updated, 0 deleted"),
        "{out}"
    );
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");

    // What the server has: every field, exported; applying that back changes nothing.
    let exported = ctl.export().await;
    for part in [
        "name: api",
        "period: 30s",
        "failure_threshold: 3",
        "- status=200-299",
        "- degraded:latency<500ms",
        "name: web",
        "period: 1m",
        "paused: false",
    ] {
        assert!(exported.contains(part), "{part}: {exported}");
    }
    ctl.write("exported.yaml", &exported);
    let (code, out, err) = ctl.run(&["apply", "-f", "exported.yaml", "--prune"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");

    // Changes: the changed fields, old -> new; a field left out stays.
    ctl.write(
        "monitors.yaml",
        &format!(
            "urls:\n  - name: api\n    url: {api}\n    period: 10s\n    paused: true\n    assertions: []\n"
        ),
    );
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("~ update api: period 30s -> 10s, paused false -> true, assertions [status=200-299, degraded:latency<500ms] -> []\n"),
        "{out}"
    );
    assert!(!out.contains("web"), "without --prune web stays: {out}");
    let exported = ctl.export().await;
    assert!(
        exported.contains("name: web") && exported.contains("failure_threshold: 3"),
        "{exported}"
    );

    // --prune deletes what the file leaves out, and only the caller's.
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml", "--prune"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("- delete web: {web} (id ")),
        "{out}"
    );
    assert!(!ctl.export().await.contains("web"));
    assert!(other.export().await.contains(&target.url("/theirs")));

    // A changed url replaces the URL.
    let moved = target.url("/api2");
    ctl.write(
        "monitors.yaml",
        &format!("urls:\n  - name: api\n    url: {moved}\n"),
    );
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("-/+ replace api: url {api} -> {moved}")),
        "{out}"
    );
    assert!(ctl.export().await.contains(&moved));
}

/// The environment `channels_file` needs: a PagerDuty key and this Slack URL.
fn env(slack: &str) -> [(&'static str, &str); 2] {
    [
        ("PD_KEY", "R0123456789abcdefABCDEF012345678"),
        ("SLACK_URL", slack),
    ]
}

/// A monitors file with two URLs (api, web) and three channels (ops: a
/// webhook for api; pager: PagerDuty for both; chat: Slack for all), the
/// secrets from the environment; and the Slack URL `n` on `target`.
fn channels_file(target: &Target) -> (String, impl Fn(u8) -> String + '_) {
    let file = format!(
        "urls:\n  - name: api\n    url: {}\n  - name: web\n    url: {}\n\
         channels:\n  - name: ops\n    webhook: {}\n    urls: [api]\n    notify_degraded: true\n\
         \x20 - name: pager\n    pagerduty: ${{PD_KEY}}\n    events_url: {}\n    urls: [web, api]\n\
         \x20 - name: chat\n    slack: ${{SLACK_URL}}\n",
        target.url("/api"),
        target.url("/web"),
        target.url("/hook"),
        target.url("/pd"),
    );
    (file, |n| target.url(&format!("/services/T0/B0/secret{n}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manages_channels_by_name_with_secrets_from_the_environment() {
    let target = Target::start().await;
    let app = app().await;
    let ctl = Ctl::login(&app, "channels-iac@example.com").await;
    let (hook, pd) = (target.url("/hook"), target.url("/pd"));
    let (file, slack) = channels_file(&target);
    ctl.write("monitors.yaml", &file);
    let (one, two) = (slack(1), slack(2));

    // A variable that is not set: exit 2 at its line, nothing changed.
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &[("SLACK_URL", &one)])
        .await;
    assert_eq!(code, Some(2), "{out} {err}");
    assert!(
        err.contains("monitors.yaml:12: channels[1].pagerduty: the environment variable PD_KEY (named as ${PD_KEY}) is not set"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");

    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&one))
        .await;
    assert_eq!(code, Some(0), "{err}");
    for part in [
        "+ add channel chat: slack ",
        &format!("+ add channel ops: webhook {hook}\n"),
        "+ add channel pager: pagerduty key …5678 via ",
        "its webhook signing secret, shown once: whsec_",
        "applied: 5 added, 0 updated, 0 deleted",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    assert!(
        !out.contains("secret1"),
        "a Slack URL's path is not printed: {out}"
    );
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&one))
        .await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");

    // A new secret in the environment is a change, though the server shows
    // it masked (the digests differ); the rest stays.
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("~ update channel chat: target slack "),
        "{out}"
    );
    assert!(
        out.contains("applied: 0 added, 1 updated, 0 deleted"),
        "{out}"
    );

    // export writes the channels back, secrets left to variables it names.
    let (code, exported, err) = ctl.run(&["export"]).await;
    assert_eq!(code, Some(0), "{err}");
    for part in [
        "channels:",
        "- name: ops",
        &format!("webhook: {hook}"),
        "notify_degraded: true",
        "pagerduty: ${MONITOR_CHANNEL_PAGER_PAGERDUTY_KEY}",
        &format!("events_url: {pd}"),
        "slack: ${MONITOR_CHANNEL_CHAT_SLACK_URL}",
        "  - api\n  - web\n",
    ] {
        assert!(exported.contains(part), "{part}: {exported}");
    }
    assert!(err.contains("set MONITOR_CHANNEL_CHAT_SLACK_URL"), "{err}");
    ctl.write("exported.yaml", &exported);
    let exported_env = [
        (
            "MONITOR_CHANNEL_PAGER_PAGERDUTY_KEY",
            "R0123456789abcdefABCDEF012345678",
        ),
        ("MONITOR_CHANNEL_CHAT_SLACK_URL", two.as_str()),
    ];
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "exported.yaml", "--prune"], &exported_env)
        .await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_relinks_replaced_urls_changes_channels_by_field_and_prunes_them() {
    let target = Target::start().await;
    let app = app().await;
    let ctl = Ctl::login(&app, "channels-prune@example.com").await;
    let api = target.url("/api");
    let (file, slack) = channels_file(&target);
    let two = slack(2);
    ctl.write("monitors.yaml", &file);
    let (code, _, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!(code, Some(0), "{err}");

    // A replaced URL: its channels are linked to the new one.
    let moved = target.url("/api2");
    ctl.write(
        "monitors.yaml",
        &file.replace(&format!("url: {api}\n"), &format!("url: {moved}\n")),
    );
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("~ update channel ops: urls: api is replaced, linked anew"),
        "{out}"
    );
    assert!(
        out.contains("~ update channel pager: urls: api is replaced, linked anew"),
        "{out}"
    );
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");

    // Changes by field; a channel naming a URL nobody has is refused.
    let changed = file
        .replace(&format!("url: {api}\n"), &format!("url: {moved}\n"))
        .replace(
            "    urls: [api]\n    notify_degraded: true",
            "    urls: []\n    notify_degraded: false",
        );
    ctl.write("monitors.yaml", &changed);
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("~ update channel ops: urls [api] -> all, notify_degraded true -> false\n"),
        "{out}"
    );
    ctl.write(
        "monitors.yaml",
        &changed.replace("urls: [web, api]", "urls: [web, nowhere]"),
    );
    let (code, out, err) = ctl
        .run_with(&["apply", "-f", "monitors.yaml"], &env(&two))
        .await;
    assert_eq!(code, Some(2), "{out} {err}");
    assert!(
        err.contains("monitors.yaml:14: channels[1].urls: no URL named \"nowhere\" in the file or the account"),
        "{err}"
    );

    // Without `channels:` they are left alone, even with --prune; with an
    // empty list and --prune they go.
    let only_urls = format!("urls:\n  - name: api\n    url: {moved}\n");
    ctl.write("monitors.yaml", &only_urls);
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml", "--prune"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("channel"), "{out}");
    ctl.write("monitors.yaml", &format!("{only_urls}channels: []\n"));
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml", "--prune"]).await;
    assert_eq!(code, Some(0), "{err}");
    for name in ["chat", "ops", "pager"] {
        assert!(
            out.contains(&format!("- delete channel {name}: ")),
            "{name}: {out}"
        );
    }
    assert!(ctl.export().await.contains("channels: []"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_sets_dependencies_by_name() {
    let target = Target::start().await;
    let app = app().await;
    let ctl = Ctl::login(&app, "depends@example.com").await;
    let file = |parent: &str| {
        format!(
            "urls:\n  - name: web\n    url: {}\n    depends_on: {parent}\n  - name: api\n    url: {}\n",
            target.url("/web"),
            target.url("/api")
        )
    };
    ctl.write("monitors.yaml", &file("api"));
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(0), "{out} {err}");
    let exported = ctl.export().await;
    assert!(exported.contains("depends_on: api"), "{exported}");
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");
    ctl.write("exported.yaml", &exported);
    let (code, out, err) = ctl.run(&["apply", "-f", "exported.yaml", "--prune"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "no changes\n"), "{err}");

    ctl.write("monitors.yaml", &file("\"\""));
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("~ update web: depends_on api -> none\n"),
        "{out}"
    );
    assert!(!ctl.export().await.contains("depends_on"));

    ctl.write("monitors.yaml", &file("nowhere"));
    let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(2), "{out} {err}");
    assert!(
        err.contains("monitors.yaml:2: urls[0].depends_on: no URL named \"nowhere\" in the file or the account"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_bad_files_with_the_file_line_and_key_and_changes_nothing() {
    let target = Target::start().await;
    let app = app().await;
    let ctl = Ctl::login(&app, "bad@example.com").await;
    let url = target.url("/ok");
    for (text, says) in [
        (
            format!("urls:\n  - name: a\n    url: {url}\n   bad: [\n"),
            "monitors.yaml:4: did not find expected",
        ),
        (
            format!(
                "urls:\n  - name: a\n    url: {url}\n  - name: b\n    url: {url}\n    period: abc\n"
            ),
            "monitors.yaml:6: urls[1].period: \"abc\" is not a duration",
        ),
        (
            format!("urls:\n  - name: a\n    url: {url}\n    colour: red\n"),
            "monitors.yaml:4: urls[0]: unknown field `colour`",
        ),
        (
            format!("urls:\n  - name: a\n    url: {url}\n  - name: a\n    url: {url}\n"),
            "monitors.yaml:4: urls[1].name: \"a\" is named twice",
        ),
        (
            format!(
                "urls:\n  - name: a\n    url: {url}\n    assertions: [\"status=200\", \"nope\"]\n"
            ),
            "monitors.yaml:4: urls[0].assertions: [1]: \"nope\" is not an assertion",
        ),
        (
            "urls:\n  - name: a\n    url: ftp://x/\n".to_owned(),
            "monitors.yaml:3: urls[0].url: \"ftp://x/\" is not an http:// or https:// URL",
        ),
        (
            format!(
                "urls:\n  - name: a\n    url: {url}\nchannels:\n  - name: c\n    webhook: ftp://x/\n"
            ),
            "monitors.yaml:6: channels[0].webhook: ",
        ),
        (
            format!(
                "urls:\n  - name: a\n    url: {url}\nchannels:\n  - name: c\n    webhook: {url}\n    email: a@example.com\n"
            ),
            "monitors.yaml:5: channels[0].name: set exactly one of webhook, slack, email or pagerduty (found 2)",
        ),
        (
            format!(
                "urls: []\nchannels:\n  - name: c\n    email: a@example.com\n    events_url: {url}\n"
            ),
            "monitors.yaml:5: channels[0].events_url: goes with pagerduty only",
        ),
        (
            format!(
                "urls: []\nchannels:\n  - name: c\n    webhook: {url}\n  - name: c\n    webhook: {url}\n"
            ),
            "monitors.yaml:5: channels[1].name: \"c\" is named twice",
        ),
        (
            format!("urls: []\nchannels:\n  - name: c\n    webhook: {url}\n    colour: red\n"),
            "unknown field `colour`",
        ),
        // The server's refusal, at the entry's line.
        (
            format!(
                "urls:\n  - name: ok\n    url: {url}\n  - name: a\n    url: {url}\n    failure_threshold: 0\n"
            ),
            "monitors.yaml:4: urls[1].failure_threshold: must be between 1 and 100",
        ),
    ] {
        ctl.write("monitors.yaml", &text);
        let (code, out, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
        assert_eq!(code, Some(2), "{text}: {out} {err}");
        assert!(err.contains(says), "{says}: {err}");
        if !says.contains("failure_threshold") {
            assert!(out.is_empty(), "no plan for a bad file: {out}");
        }
    }
    // The refused entry left nothing half made (the one before it was applied).
    let exported = ctl.export().await;
    assert!(!exported.contains("name: a\n"), "{exported}");

    // Two URLs with one name on the server: refused, naming them.
    for path in ["/one", "/two"] {
        let (code, out, err) = ctl.run(&["--json", "add", &target.url(path)]).await;
        assert_eq!(code, Some(0), "{err}");
        let added: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = added["url"]["id"]
            .as_str()
            .or(added["id"].as_str())
            .unwrap()
            .to_owned();
        let (code, _, err) = ctl.run(&["update", &id, "--name", "twice"]).await;
        assert_eq!(code, Some(0), "{err}");
    }
    ctl.write(
        "monitors.yaml",
        &format!("urls:\n  - name: ok\n    url: {url}\n"),
    );
    let (code, _, err) = ctl.run(&["apply", "-f", "monitors.yaml"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("more than one URL named \"twice\" (ids "),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_from_gatus_imports_endpoints_and_lists_skipped_conditions() {
    // The server does not probe: the fixture's public names are never resolved.
    let app = app().await;
    let ctl = Ctl::login(&app, "gatus@example.com").await;
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gatus.yaml"),
    )
    .unwrap();
    ctl.write("config.yaml", &fixture);
    let (code, out, err) = ctl
        .run(&["apply", "--from", "gatus", "-f", "config.yaml"])
        .await;
    assert_eq!(code, Some(0), "{err}");
    for part in [
        "skipped dns-check: the whole endpoint (8.8.8.8: not http or https)",
        "skipped core/api: len([BODY].items) > 0 (no matching assertion)",
        "skipped website: [BODY] == pat(*<h1>*Welcome*) (only pat(*TEXT*) has an assertion here (body~TEXT))",
        "+ add core/api: ",
        "+ add website: ",
        "applied: 2 added, 0 updated, 0 deleted",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    let exported = ctl.export().await;
    for part in [
        "name: core/api",
        "period: 30s",
        "- status=200",
        "- latency<500ms",
        "- json:/status=\"UP\"",
        "- json:/data/0/healthy=true",
        "name: website",
        "period: 5m",
        "paused: true",
        "- status=100-299",
        "- tls-days>=30",
    ] {
        assert!(exported.contains(part), "{part}: {exported}");
    }
    // Importing again changes nothing.
    let (code, out, err) = ctl
        .run(&["apply", "--from", "gatus", "-f", "config.yaml"])
        .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("no changes\n"), "{out}");
}

/// The README's block (after its marker comment), run by bash as written
/// with monitorctl on the PATH, only the server's address changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_as_written() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = "<!-- monitors_as_code::the_readme_example_runs_as_written runs this block";
    let after = &readme[readme.find(marker).expect("the README marks its block")..];
    let block = after
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block after the marker");
    let script = block.replace("http://127.0.0.1:50051", &format!("http://{}", app.addr));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_monitorctl"))
        .parent()
        .unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("MONITORCTL_CONFIG_DIR", dir.path())
        .env_remove("MONITOR_SERVER")
        .env_remove("MONITOR_PASSWORD");
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, Some(0), "the README's block failed:\n{out}\n{err}");
    // What the README says it prints.
    for part in [
        "+ add api: https://example.com/health\n+ add website: https://example.com/\n\
         + add channel ops: webhook https://hooks.example.com/monitor\n\
         + add channel pager: pagerduty key …5678\ndry run: nothing changed\n",
        "its webhook signing secret, shown once: whsec_",
        "applied: 4 added, 0 updated, 0 deleted\nno changes\n",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    assert!(out.ends_with("no changes\nno changes\n"), "{out}");
}
