//! The tools the tests run besides pkgmirror, and how they run them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The tools

/// The python of the test venv.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("PKGMIRROR_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return path.into();
    }
    // `sys.executable`, not the resolved file: a venv's python is a link out of its `bin`.
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| {
            panic!("no python3 on PATH ({e}): run `bash tests/run.sh`, which sets up the Python clients")
        });
    assert!(
        output.status.success(),
        "python3 does not run: run `bash tests/run.sh`"
    );
    String::from_utf8_lossy(&output.stdout).trim().into()
}

/// A tool installed next to [`python`], or a failure saying how to get it.
pub fn tool(name: &str) -> PathBuf {
    let python = python();
    let path = python.parent().unwrap_or(Path::new(".")).join(name);
    assert!(
        path.is_file(),
        "{name} is not installed next to {} (looked for {}): run `bash tests/run.sh`, which \
         installs pip, uv, poetry and pdm into its venv and points PKGMIRROR_TEST_PYTHON at it",
        python.display(),
        path.display()
    );
    path
}

/// [`python`], after checking that it has pip.
pub fn python_with_pip() -> PathBuf {
    let python = python();
    let ok = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} has no pip: run `bash tests/run.sh`, which installs pip, uv, poetry and pdm into its \
         venv and points PKGMIRROR_TEST_PYTHON at it",
        python.display()
    );
    python
}

// ---------------------------------------------------------------------------------------------
// Running a tool

/// A finished (or killed) run of a client tool.
pub struct Run {
    pub what: String,
    /// `None`: killed at the timeout.
    pub status: Option<ExitStatus>,
    pub timeout: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn report(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {:?}", self.timeout),
        };
        format!(
            "$ {}\n[{status}]\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (shown as `what`) off the async runtime, killing it and whatever it started after
/// `timeout`. `install_hint` says how to get the tool when it cannot be started.
pub async fn run_tool(mut cmd: Command, what: String, timeout: Duration, install_hint: &'static str) -> Run {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    tokio::task::spawn_blocking(move || {
        // Its own process group, so a timeout also ends the builds, resolvers or VMs it started.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}{install_hint}"));
        let read = |mut stream: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = stream.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = read(Box::new(child.stdout.take().unwrap()));
        let stderr = read(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            what,
            status,
            timeout,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .unwrap()
}
