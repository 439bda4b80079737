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
        let config = rebar_config(self.repo_key);
        self.compile_project(&config, &["fixbar"], cdn).await
    }

    /// Runs `rebar3 compile` in a new project with this `rebar.config`, an application that
    /// needs the applications `apps`; returns the run and the project directory.
    pub async fn compile_project(&mut self, rebar_config: &str, apps: &[&str], cdn: &str) -> (Run, PathBuf) {
        self.projects += 1;
        let project = self.dir.path().join(format!("project{}", self.projects));
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(project.join("rebar.config"), rebar_config).unwrap();
        // The project is an application of its own, as `rebar3 new app` makes one.
        let apps: String = apps.iter().map(|app| format!(", {app}")).collect();
        std::fs::write(
            project.join("src/fixapp.app.src"),
            format!(
                "{{application, fixapp, [{{description, \"uses hex packages\"}}, {{vsn, \"0.1.0\"}}, \
                 {{registered, []}}, {{applications, [kernel, stdlib{apps}]}}, {{env, []}}, \
                 {{modules, []}}]}}.\n"
            ),
        )
        .unwrap();
        std::fs::write(project.join("src/fixapp.erl"), "-module(fixapp).\n").unwrap();
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

    /// Publishes the Erlang application `name` `version`, needing `deps` (package,
    /// requirement), to the hex API at `api` with `token`, using the hex client code rebar3
    /// ships (`tests/fixtures/hex/publish.escript`). `repository`: publish to
    /// `{api}/repos/{repository}/publish`, else `{api}/publish`. `tamper`: `none`, `checksum`
    /// (a wrong inner checksum) or `bytes` (other contents under the same version).
    pub async fn publish(
        &mut self,
        api: &str,
        token: &str,
        repository: Option<&str>,
        (name, version): (&str, &str),
        deps: &[(&str, &str)],
        tamper: &str,
    ) -> Publish {
        let deps = if deps.is_empty() {
            "-".to_owned()
        } else {
            deps.iter()
                .map(|(package, requirement)| format!("{package}:{requirement}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let repository = repository.unwrap_or("-");
        self.hex_client(&[api, token, repository, name, version, &deps, tamper])
            .await
    }

    /// Retires a release (`Some((reason, message))`) or unretires it (`None`) through the hex
    /// API at `api`, with rebar3's hex client code (see [`Rebar3User::publish`]).
    pub async fn retire(
        &mut self,
        api: &str,
        token: &str,
        repository: Option<&str>,
        (name, version): (&str, &str),
        retirement: Option<(&str, &str)>,
    ) -> Publish {
        let (reason, message) = retirement.unwrap_or(("-", ""));
        let repository = repository.unwrap_or("-");
        self.hex_client(&[api, token, repository, "retire", name, version, reason, message])
            .await
    }

    /// `tests/fixtures/hex/publish.escript` with `args` (after rebar3's path).
    async fn hex_client(&mut self, args: &[&str]) -> Publish {
        let escript = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hex/publish.escript");
        let mut cmd = Command::new("escript");
        cmd.arg(&escript)
            .arg(tools::path(Tool::Rebar3))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path().join("tmp"));
        // The token (the second of `args`) stays out of the transcript.
        let shown: Vec<&str> = args
            .iter()
            .enumerate()
            .map(|(i, arg)| if i == 1 { "TOKEN" } else { *arg })
            .collect();
        let what = format!("publish.escript {}", shown.join(" "));
        let run = run(cmd, what).await;
        self.transcript.push(run.report());
        let line = |prefix: &str| {
            run.stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_default()
                .to_owned()
        };
        Publish {
            status: line("STATUS ").parse().unwrap_or(0),
            body: line("BODY "),
            outer: line("OUTER "),
        }
    }

    pub fn transcript(&self) -> String {
        self.transcript.join("\n\n")
    }
}

/// What a publish (or a retirement) through rebar3's hex client came to: the status, the body as the client read
/// it (an Erlang term, printed), and the sha256 of the tarball it sent (the run itself is in the
/// user's transcript).
pub struct Publish {
    pub status: u16,
    pub body: String,
    pub outer: String,
}

/// Asserts that the project's `rebar.lock` pins each (package, version) of `pinned`.
pub fn assert_locked(user: &Rebar3User, project: &Path, pinned: &[(&str, &str)]) {
    let lock = std::fs::read_to_string(project.join("rebar.lock")).unwrap_or_default();
    for (app, version) in pinned {
        assert!(
            lock.contains(&format!(
                "{{<<\"{app}\">>,{{pkg,<<\"{app}\">>,<<\"{version}\">>}}"
            )),
            "rebar.lock does not pin {app} {version}:\n{lock}\n{}",
            user.transcript()
        );
    }
}

/// A `rebar.config` needing `deps` (package, requirement) from the one repository `name` at
/// `url` (pinned to `key`, PEM), in place of hexpm.
pub fn single_repository_config(deps: &[(&str, &str)], name: &str, url: &str, key: &str) -> String {
    let deps: Vec<String> = deps
        .iter()
        .map(|(package, requirement)| format!("{{{package}, \"{requirement}\"}}"))
        .collect();
    format!(
        "{{erl_opts, [debug_info]}}.\n\
         {{deps, [{}]}}.\n\
         {{hex, [{{repos, replace, [#{{name => <<\"{name}\">>, repo_url => <<\"{url}\">>, \
         repo_public_key => <<\"{}\">>}}]}}]}}.\n",
        deps.join(", "),
        key.trim_end()
    )
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
