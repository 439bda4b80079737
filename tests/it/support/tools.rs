//! The tools the tests run besides pkgmirror, where each is found, and how they run.
//!
//! `tests/run.sh` installs every tool and names it in a `PKGMIRROR_TEST_*` variable. A bare
//! `cargo test` may lack them: a test that needs one asks [`require`] first, which skips the test
//! with one line on stderr when the tool is missing, or fails it when `PKGMIRROR_REQUIRE_TOOLS=1`
//! (as `tests/run.sh` sets, so that CI never skips).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The tools

/// A tool some tests need that a bare `cargo test` may lack.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    /// The test venv's python, with pip: `PKGMIRROR_TEST_PYTHON`, else `python3` on `PATH`.
    Pip,
    /// uv, poetry, pdm and twine: next to that python.
    Uv,
    Poetry,
    Pdm,
    Twine,
    /// moto's standalone S3 server: `$PKGMIRROR_TEST_VENV/bin/moto_server`, the venv defaulting
    /// to `~/.cache/pkgmirror/venv`.
    Moto,
    /// A program of the index servers' venv (`pypi-server`, `devpi-server`, ...), in
    /// `PKGMIRROR_TEST_SERVERS_BIN`.
    IndexServer(&'static str),
    /// `PKGMIRROR_TEST_REBAR3`, else `rebar3` on `PATH`.
    Rebar3,
    /// `CHROMIUM`, else Debian's `/usr/bin/chromium`.
    Chromium,
    /// The `node_modules` holding playwright-core: `PKGMIRROR_TEST_NODE_MODULES`.
    Playwright,
    /// `node` on `PATH`.
    Node,
    /// Prometheus's `promtool`: `PKGMIRROR_TEST_PROMTOOL`, else on `PATH`.
    Promtool,
    /// A program of the base system on `PATH` (`curl`, `openssl`).
    System(&'static str),
}

/// The path of `tool`. When it is missing, prints `skipped: <test>: <why> (run bash
/// tests/run.sh)` to stderr and returns `None`, and the test returns at once; under
/// `PKGMIRROR_REQUIRE_TOOLS=1` a missing tool fails the test with that message instead.
pub fn require(tool: Tool) -> Option<PathBuf> {
    let why = match locate(tool) {
        Ok(path) => return Some(path),
        Err(why) => why,
    };
    // libtest names the thread it runs a test on after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!("skipped: {test}: {why} (run bash tests/run.sh)");
    if std::env::var_os("PKGMIRROR_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{line}, but PKGMIRROR_REQUIRE_TOOLS=1 makes a missing tool a failure");
    }
    // Written to stderr itself: libtest would hide an eprintln! of a test that passes.
    let _ = writeln!(std::io::stderr(), "{line}");
    None
}

/// [`require`] for each of `tools` in turn; `false` (the test is skipped) at the first missing one.
pub fn require_all(tools: &[Tool]) -> bool {
    tools.iter().all(|tool| require(*tool).is_some())
}

/// The path of a tool the test has required already.
pub fn path(tool: Tool) -> PathBuf {
    locate(tool).unwrap_or_else(|why| panic!("{why} (run bash tests/run.sh)"))
}

/// The python of the test venv.
pub fn python() -> PathBuf {
    find_python().unwrap_or_else(|why| panic!("{why} (run bash tests/run.sh)"))
}

/// Where `tool` is, or why it is not there.
fn locate(tool: Tool) -> Result<PathBuf, String> {
    match tool {
        Tool::Pip => {
            let python = find_python()?;
            let output = Command::new(&python)
                .args(["-m", "pip", "--version"])
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                .output()
                .map_err(|e| format!("{} does not run ({e})", python.display()))?;
            if !output.status.success() {
                return Err(format!("pip is not installed for {}", python.display()));
            }
            Ok(python)
        }
        Tool::Uv => next_to_python("uv"),
        Tool::Poetry => next_to_python("poetry"),
        Tool::Pdm => next_to_python("pdm"),
        Tool::Twine => next_to_python("twine"),
        Tool::Moto => {
            let venv = match std::env::var_os("PKGMIRROR_TEST_VENV").filter(|v| !v.is_empty()) {
                Some(venv) => PathBuf::from(venv),
                None => std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache/pkgmirror/venv"))
                    .ok_or("moto is not found: PKGMIRROR_TEST_VENV and HOME are unset")?,
            };
            existing("moto_server", venv.join("bin/moto_server"))
        }
        Tool::IndexServer(name) => {
            let bin = std::env::var_os("PKGMIRROR_TEST_SERVERS_BIN")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{name} is not found: PKGMIRROR_TEST_SERVERS_BIN (the bin directory of \
                         pypiserver, devpi-server and proxpi) is not set"
                    )
                })?;
            existing(name, Path::new(&bin).join(name))
        }
        Tool::Rebar3 => match std::env::var_os("PKGMIRROR_TEST_REBAR3").filter(|v| !v.is_empty()) {
            Some(path) => existing("rebar3 (PKGMIRROR_TEST_REBAR3)", PathBuf::from(path)),
            None => on_path("rebar3").ok_or_else(|| {
                "rebar3 is not installed (PKGMIRROR_TEST_REBAR3 is unset, none on PATH)".into()
            }),
        },
        Tool::Chromium => {
            let path = std::env::var_os("CHROMIUM")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
            existing("Chromium", path)
        }
        Tool::Playwright => {
            let dir = std::env::var_os("PKGMIRROR_TEST_NODE_MODULES")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or(
                    "playwright-core is not found: PKGMIRROR_TEST_NODE_MODULES (the node_modules \
                     holding it) is not set",
                )?;
            existing("playwright-core", dir.join("playwright-core/package.json"))?;
            Ok(dir)
        }
        Tool::Node => on_path("node").ok_or_else(|| "node is not installed (none on PATH)".into()),
        Tool::System(name) => on_path(name).ok_or_else(|| format!("{name} is not installed (none on PATH)")),
        Tool::Promtool => match std::env::var_os("PKGMIRROR_TEST_PROMTOOL").filter(|v| !v.is_empty()) {
            Some(path) => existing("promtool (PKGMIRROR_TEST_PROMTOOL)", PathBuf::from(path)),
            None => on_path("promtool").ok_or_else(|| {
                "promtool is not installed (PKGMIRROR_TEST_PROMTOOL is unset, none on PATH)".into()
            }),
        },
    }
}

/// `PKGMIRROR_TEST_PYTHON`, else the `python3` on `PATH` as it names itself.
fn find_python() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PKGMIRROR_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    // `sys.executable`, not the resolved file: a venv's python is a link out of its `bin`.
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("python3 is not installed ({e}) and PKGMIRROR_TEST_PYTHON is unset"))?;
    if !output.status.success() {
        return Err("python3 does not run and PKGMIRROR_TEST_PYTHON is unset".into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().into())
}

/// A tool of the Python clients' venv: next to its python.
fn next_to_python(name: &str) -> Result<PathBuf, String> {
    let python = find_python()?;
    let path = python.parent().unwrap_or(Path::new(".")).join(name);
    if !path.is_file() {
        return Err(format!("{name} is not installed next to {}", python.display()));
    }
    Ok(path)
}

/// `path`, if it is a file; otherwise why `what` is missing.
fn existing(what: &str, path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{what} is not installed (no {})", path.display()))
    }
}

/// The first `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
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

/// The environment that makes a process unable to reach anything but 127.0.0.1: every other host
/// goes through a proxy that is not there.
pub fn loopback_only_env() -> Vec<(&'static str, &'static str)> {
    let proxies = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ];
    let mut env: Vec<_> = proxies.map(|proxy| (proxy, "http://127.0.0.1:9")).into();
    env.extend([
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ]);
    env
}

/// Makes `cmd` unable to reach anything but 127.0.0.1 ([`loopback_only_env`]).
pub fn only_loopback(cmd: &mut Command) -> &mut Command {
    cmd.envs(loopback_only_env())
}
