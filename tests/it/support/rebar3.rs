//! A rebar3 user for the tests: its own `HOME`, `TMPDIR` and `REBAR_CACHE_DIR`, an emptied
//! environment, and projects that depend on the hex fixtures (`hex_fixtures::standard`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::hex_fixtures::TEST_PUBLIC_KEY;
use super::server::temp_dir;
use super::tools::{self, Run, Tool, run_tool};

/// The longest one rebar3 command may run before it is killed.
const REBAR3_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` (shown as `what`), killed after [`REBAR3_TIMEOUT`].
async fn run(cmd: Command, what: String) -> Run {
    run_tool(
        cmd,
        what,
        REBAR3_TIMEOUT,
        ": run `bash tests/run.sh`, which installs Erlang and rebar3",
    )
    .await
}

/// A rebar3 user: `HOME` and `REBAR_CACHE_DIR` kept across projects, as on a developer's machine,
/// and a fresh project directory for each [`Rebar3User::compile`].
pub struct Rebar3User {
    pub dir: tempfile::TempDir,
    pub projects: usize,
    /// The repository key its projects pin (PEM).
    pub repo_key: &'static str,
    /// Every command run, with its output, for failure messages.
    pub transcript: Vec<String>,
}

impl Rebar3User {
    pub fn new() -> Rebar3User {
        let user = Rebar3User {
            dir: temp_dir(),
            projects: 0,
            repo_key: TEST_PUBLIC_KEY,
            transcript: Vec::new(),
        };
        for sub in ["home", "cache", "tmp"] {
            std::fs::create_dir(user.dir.path().join(sub)).unwrap();
        }
        user
    }

    /// `rebar3 {arg}` in `project` against the repository at `cdn`, with nothing of the
    /// developer's environment (no proxy, no `ERL_*` or `REBAR_*` settings); `PATH` only so the
    /// escript finds `escript` and `erl`. `DIAGNOSTIC=1` makes rebar3 report every request.
    pub async fn rebar3(&mut self, arg: &str, project: &Path, cdn: &str) -> Run {
        let mut cmd = Command::new(tools::path(Tool::Rebar3));
        cmd.arg(arg)
            .current_dir(project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("REBAR_CACHE_DIR", self.dir.path().join("cache"))
            .env("HEX_CDN", cdn)
            .env("DIAGNOSTIC", "1");
        let what = format!("cd {} && HEX_CDN={cdn} rebar3 {arg}", project.display());
        let run = run(cmd, what).await;
        self.transcript.push(run.report());
        run
    }

    /// Runs `rebar3 compile` in a new project that depends on `fixbar` 0.1.0, with the
    /// repository at `cdn`; returns the run and the project directory.
    pub async fn compile(&mut self, cdn: &str) -> (Run, PathBuf) {
        self.projects += 1;
        let project = self.dir.path().join(format!("project{}", self.projects));
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(project.join("rebar.config"), rebar_config(self.repo_key)).unwrap();
        // The project is an application of its own, as `rebar3 new app` makes one.
        std::fs::write(
            project.join("src/fixapp.app.src"),
            "{application, fixapp, [{description, \"uses the hex fixtures\"}, {vsn, \"0.1.0\"}, \
             {registered, []}, {applications, [kernel, stdlib, fixbar]}, {env, []}, \
             {modules, []}]}.\n",
        )
        .unwrap();
        std::fs::write(
            project.join("src/fixapp.erl"),
            "-module(fixapp).\n-export([bar/0]).\n\nbar() -> fixbar:version().\n",
        )
        .unwrap();
        let run = self.rebar3("compile", &project, cdn).await;
        (run, project)
    }

    /// `rebar3 update`: fetches `/packages/{name}` again for every package rebar3 knows.
    pub async fn update(&mut self, cdn: &str) -> Run {
        let dir = self.dir.path().join("update");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rebar.config"), rebar_config(self.repo_key)).unwrap();
        self.rebar3("update", &dir, cdn).await
    }

    pub fn transcript(&self) -> String {
        self.transcript.join("\n\n")
    }
}

/// `{deps, [{fixbar, "0.1.0"}]}` and the hexpm repository pinned to `repo_key` (PEM).
fn rebar_config(repo_key: &str) -> String {
    format!(
        "{{erl_opts, [debug_info]}}.\n\
         {{deps, [{{fixbar, \"0.1.0\"}}]}}.\n\
         {{hex, [{{repos, [#{{name => <<\"hexpm\">>, repo_public_key => <<\"{}\">>}}]}}]}}.\n",
        repo_key.trim_end()
    )
}
