//! The `monitor` binary as a child process: one way to start it, read what
//! it logs, and stop it (SIGTERM) or kill it (-9), for every test that
//! runs the real binary.

use monitor::proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient};
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

/// `monitor` with nothing inherited that could point elsewhere, its data in
/// `data_dir`, both ports on 0, and the prober off (tests add example.com;
/// nothing may look it up).
pub fn monitor_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "MONITOR_TOKEN_KEY",
        "MONITOR_GRPC_ADDR",
        "MONITOR_HTTP_ADDR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("MONITOR_DATA_DIR", data_dir)
        .env("MONITOR_PROBER", "false")
        .env("MONITOR_GRPC_ADDR", "127.0.0.1:0")
        .env("MONITOR_HTTP_ADDR", "127.0.0.1:0");
    cmd
}

/// `cmd` run under an open-file limit of `limit` (soft and hard, so the
/// server cannot raise it), through `sh -c 'ulimit -n …; exec …'`.
pub fn with_open_file_limit(cmd: &Command, limit: u32) -> Command {
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    limited
}

/// Asks a child to stop (SIGTERM) and waits for it.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM failed");
    child.wait().unwrap()
}

/// A running binary whose output (stdout and stderr) is read line by line.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub log: Vec<String>,
}

impl Running {
    /// Starts `cmd` (which must log JSON) and reads its output.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("MONITOR_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for the "serving" line; returns the gRPC address it names.
    pub fn grpc_addr(&mut self) -> String {
        self.addrs().0
    }

    /// Waits for the "serving" line; returns the gRPC and HTTP addresses.
    pub fn addrs(&mut self) -> (String, String) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the server said it is serving");
            self.log.push(line.clone());
            if line.contains("\"serving\"") {
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                let addr = |name: &str| v[name].as_str().unwrap().to_owned();
                return (addr("grpc_addr"), addr("http_addr"));
            }
        }
    }

    /// Waits for the server, connects the generated client and registers
    /// `email` with `password`.
    pub async fn registered_client(
        &mut self,
        email: &str,
        password: &str,
    ) -> MonitorServiceClient<tonic::transport::Channel> {
        let addr = self.grpc_addr();
        let mut client = MonitorServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        client
            .register(pb::RegisterRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .unwrap();
        client
    }

    /// How many file descriptors the process has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    /// Every line logged so far (waiting briefly for more).
    pub fn read_log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
            self.log.push(line);
        }
        &self.log
    }

    /// The process's resident memory, in MiB.
    pub fn resident_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// SIGTERM, then waits for the exit; returns its status and the whole log.
    pub async fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let (status, mut this) = tokio::task::spawn_blocking(move || {
            let status = terminate(&mut self.child);
            (status, self)
        })
        .await
        .unwrap();
        let mut log = std::mem::take(&mut this.log);
        log.extend(this.lines.iter());
        (status, log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
