//! The example adapters of `deploy/examples` as processes, for tests: started
//! on a free port, waited for (their "listening on" line), killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running example adapter.
#[derive(Debug)]
pub struct ExampleAdapter {
    child: Child,
    /// Where it listens, for example `127.0.0.1:40123`.
    pub addr: String,
    /// Its port.
    pub port: u16,
}

impl ExampleAdapter {
    /// Its plaintext gRPC endpoint, `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ExampleAdapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python example with `args` (after `--port 0`).
pub async fn python(args: &[&str]) -> std::io::Result<ExampleAdapter> {
    let script = repo_root().join("deploy/examples/python-adapter/server.py");
    let mut command = Command::new("python3");
    command.arg(script).args(["--port", "0"]).args(args);
    start(command, "python3 (tools/test installs it with grpcio)").await
}

/// The Node.js example with `args` (after `--port 0`).
pub async fn node(args: &[&str]) -> std::io::Result<ExampleAdapter> {
    let script = repo_root().join("deploy/examples/node-adapter/server.js");
    let mut command = Command::new("node");
    command.arg(script).args(["--port", "0"]).args(args);
    start(command, "node (tools/test installs it and the example's packages)").await
}

/// Runs `command` and waits up to 60 s for its first line,
/// `listening on <host>:<port>`.
pub async fn start(mut command: Command, what: &str) -> std::io::Result<ExampleAdapter> {
    let fail = |why: String| std::io::Error::other(format!("{what}: {why}"));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("does not start: {e}")))?;
    let stdout = child.stdout.take().ok_or_else(|| fail("no stdout".into()))?;
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(Ok(line))) => line,
        _ => {
            let _ = child.kill();
            return Err(fail("did not say where it listens within 60 s".into()));
        }
    };
    let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        return Err(fail(format!("unexpected first line {line:?}")));
    };
    let port =
        addr.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| fail(format!("no port in {addr:?}")))?;
    Ok(ExampleAdapter { child, addr, port })
}
