//! The two servers under test, each a child process of the bench: the local gateway (ours) and
//! the socket.io relay (the baseline). Both listen on a free loopback port chosen by the OS and
//! print it; the bench reads that line. A [`Child`] is killed when dropped (tokio's
//! `kill_on_drop`), so an error or a panic anywhere in a scenario never leaves a server behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::{BenchError, Result};

/// How long a server may take to print its ready line.
const READY_WAIT: Duration = Duration::from_secs(30);
/// Bound on `npm ci` for the relay.
const NPM_WAIT: Duration = Duration::from_secs(300);

/// A rate so high that the gateway's token buckets never refuse during a bench. The relay has no
/// rate limits at all; with the defaults (20 submits/s per user) the saturated workloads would
/// measure the limiter, not the server.
const UNLIMITED_RATE: &str = "1000000";

/// How to start the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The `local-gateway` binary.
    pub program: PathBuf,
    /// Extra arguments passed through (e.g. a delivery mode).
    pub extra_args: Vec<String>,
    /// `RUST_LOG` of the gateway: `warn` by default, so its logging does not weigh on the
    /// measurement.
    pub log: String,
    /// Where the gateway keeps its data.
    pub store: GatewayStore,
}

/// The gateway's storage under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GatewayStore {
    /// Everything in memory (`--ephemeral`): the figures of the protocol path alone.
    #[default]
    Memory,
    /// The persistent embedded default (SQLite in a fresh temporary data directory): every
    /// event confirmed only after its archive transaction has committed.
    Sqlite,
}

/// How to start the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The folder holding `relay.js` and `package.json`.
    pub dir: PathBuf,
    /// The `node` program.
    pub node: String,
    /// The `npm` program (for `npm ci` when `node_modules` is missing).
    pub npm: String,
}

/// A running server process, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its process id (for RSS).
    pub pid: u32,
    /// The gateway's data directory ([`GatewayStore::Sqlite`]), removed with the server.
    data: Option<tempfile::TempDir>,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Server {
    /// The local gateway on `127.0.0.1:0`, memory backend, no maintenance timer, rate limits
    /// lifted (see [`UNLIMITED_RATE`]).
    pub async fn gateway(cfg: &GatewayConfig) -> Result<Self> {
        if !cfg.program.is_file() {
            return Err(BenchError::NoGateway(cfg.program.clone()));
        }
        let mut cmd = Command::new(&cfg.program);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--no-compaction",
            "--no-compendium",
        ]);
        let data = match cfg.store {
            GatewayStore::Memory => {
                cmd.arg("--ephemeral");
                None
            }
            GatewayStore::Sqlite => {
                let dir = tempfile::tempdir().map_err(|source| BenchError::Io {
                    what: "create the gateway's data directory".to_owned(),
                    source,
                })?;
                cmd.arg("--data-dir").arg(dir.path());
                Some(dir)
            }
        };
        cmd.args(&cfg.extra_args).env("RUST_LOG", &cfg.log);
        for class in ["SUBMIT", "CONNECTION", "READ", "CONTROL", "EPHEMERAL"] {
            cmd.env(format!("DLAB_RATE_{class}_PER_SECOND"), UNLIMITED_RATE)
                .env(format!("DLAB_RATE_{class}_BURST"), UNLIMITED_RATE);
        }
        // The banner line `  WebSocket: ws://127.0.0.1:PORT/?token=…`.
        let mut server = Self::spawn("the local gateway", cmd, |line| {
            let rest = line.trim().strip_prefix("WebSocket: ws://127.0.0.1:")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .await?;
        server.data = data;
        Ok(server)
    }

    /// The socket.io relay on `127.0.0.1:0`; runs `npm ci` first when `node_modules` is missing.
    pub async fn relay(cfg: &RelayConfig) -> Result<Self> {
        ensure_node_modules(cfg).await?;
        let mut cmd = Command::new(&cfg.node);
        cmd.arg("relay.js")
            .args(["--port", "0"])
            .current_dir(&cfg.dir);
        // `relay listening on 127.0.0.1:PORT`.
        Self::spawn("the socket.io relay", cmd, |line| {
            line.trim()
                .strip_prefix("relay listening on 127.0.0.1:")?
                .parse()
                .ok()
        })
        .await
    }

    async fn spawn(
        what: &'static str,
        mut cmd: Command,
        port_of: impl Fn(&str) -> Option<u16>,
    ) -> Result<Self> {
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what,
                program,
                source,
            })?;
        let pid = child.id().ok_or_else(|| BenchError::NotReady {
            what,
            reason: "exited at once".to_owned(),
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(READY_WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = port_of(&line) {
                    return Some(port);
                }
            }
            None
        })
        .await;
        let port = match found {
            Ok(Some(port)) => port,
            Ok(None) => {
                return Err(BenchError::NotReady {
                    what,
                    reason: "its output ended without the ready line".to_owned(),
                });
            }
            Err(_) => {
                return Err(BenchError::NotReady {
                    what,
                    reason: format!("no ready line within {READY_WAIT:?}"),
                });
            }
        };
        // Keep reading its output so the pipe never fills and blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            pid,
            port,
            data: None,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its resident set size now.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid)
    }

    /// Kills it and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `VmRSS` of a process from `/proc/<pid>/status`, in KiB. Read by hand: it is one line of a
/// text file, not worth a dependency.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        what: format!("read {path}"),
        source,
    })?;
    parse_vm_rss(&status).ok_or_else(|| BenchError::Io {
        what: format!("{path} has no VmRSS line"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

/// The `VmRSS:   12345 kB` value of a `/proc/<pid>/status` text.
fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `npm ci` in the relay folder when its `node_modules` is missing (the lock file is committed,
/// so every machine gets the same socket.io).
async fn ensure_node_modules(cfg: &RelayConfig) -> Result<()> {
    if has_socket_io(&cfg.dir) {
        return Ok(());
    }
    let fail = |reason: String| BenchError::Npm {
        dir: cfg.dir.clone(),
        reason,
    };
    eprintln!("relay: node_modules missing, running npm ci");
    let mut child = Command::new(&cfg.npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&cfg.dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let status = tokio::time::timeout(NPM_WAIT, child.wait())
        .await
        .map_err(|_| fail(format!("not done within {NPM_WAIT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if !status.success() || !has_socket_io(&cfg.dir) {
        return Err(fail(format!("exited with {status}")));
    }
    Ok(())
}

fn has_socket_io(dir: &Path) -> bool {
    dir.join("node_modules/socket.io/package.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_status_text() {
        let status = "Name:\tlocal-gateway\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn own_rss_is_positive() {
        assert!(rss_kib(std::process::id()).expect("own status") > 0);
    }
}
