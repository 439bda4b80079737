//! A fresh, empty world in which pip, uv, poetry and pdm install through the mirror: `HOME`, the
//! XDG directories, caches and tool configuration all live in a temp dir, the index is set on the
//! command line or in the project, and any other host goes through a proxy that is not there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::packages::{BACKEND_GENERATOR, TREE_INSTALLED, WHEEL_GENERATOR};
use super::server::{Server, temp_dir};
use super::tools::{self, Run, Tool, only_loopback, python, run_tool};

/// The longest one tool command may run before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Running a tool

/// `cmd` as a shell line: its directory, the variables set for it alone (not the sandbox's
/// common ones), the program and its arguments.
fn shown(cmd: &Command) -> String {
    let mut line = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        line.push_str(&format!("cd {} && ", dir.display()));
    }
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        if let (Some(value), true) = (value, OWN_ENV.contains(&key.as_ref())) {
            line.push_str(&format!("{key}={} ", value.to_string_lossy()));
        }
    }
    line.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains(char::is_whitespace) {
            line.push_str(&format!(" '{arg}'"));
        } else {
            line.push_str(&format!(" {arg}"));
        }
    }
    line
}

/// Variables that single commands set, shown with them.
const OWN_ENV: [&str; 3] = ["PYTHONPATH", "PDM_PYTHON", "PDM_PYPI_URL"];

/// Runs `cmd`, killed after [`TOOL_TIMEOUT`].
pub async fn run(cmd: Command) -> Run {
    let what = shown(&cmd);
    run_tool(cmd, what, TOOL_TIMEOUT, "").await
}

/// A fresh, empty world for one install: home, XDG dirs, caches and the target, all in a temp
/// dir, and nothing of the developer's environment.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Variables every command gets on top of the emptied environment.
    env: Vec<(String, String)>,
    /// Every command run in it, with its output, for failure messages.
    pub transcript: Vec<String>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: temp_dir(),
            env: Vec::new(),
            transcript: Vec::new(),
        };
        for sub in ["home", "config", "cache", "data", "state", "tmp"] {
            std::fs::create_dir(sandbox.path(sub)).unwrap();
        }
        sandbox
    }

    /// Makes every client trust the CA certificate at `ca` (a mirror over HTTPS).
    pub fn trust(&mut self, ca: &Path) {
        let ca = ca.display().to_string();
        // pip's --cert; uv, httpx and OpenSSL's default bundle; requests.
        for var in ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
            self.env.push((var.to_owned(), ca.clone()));
        }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// `program` with an emptied environment in which only the mirror can be reached.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let bin = python().parent().unwrap().to_owned();
        let mut path = std::ffi::OsString::from(bin);
        path.push(":/usr/local/bin:/usr/bin:/bin");
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("LANG", "C.UTF-8")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("TMPDIR", self.path("tmp"))
            // No configuration file of any tool, no version check, no prompt, no keyring.
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .env("UV_NO_CONFIG", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_CACHE_DIR", self.path("cache/uv"))
            .env("VIRTUALENV_NO_PERIODIC_UPDATE", "1")
            .env("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
            .env("POETRY_CONFIG_DIR", self.path("config/poetry"))
            .env("POETRY_CACHE_DIR", self.path("cache/poetry"))
            .env("POETRY_DATA_DIR", self.path("data/poetry"))
            .env("POETRY_NO_INTERACTION", "1")
            .env("POETRY_VIRTUALENVS_IN_PROJECT", "true")
            .env("POETRY_VIRTUALENVS_USE_POETRY_PYTHON", "true")
            .env("PDM_CONFIG_FILE", self.path("config/pdm.toml"))
            .env("PDM_CACHE_DIR", self.path("cache/pdm"))
            .env("PDM_CHECK_UPDATE", "false")
            .env("PDM_NON_INTERACTIVE", "1")
            .env("PDM_USE_UV", "false");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // Anything that is not the mirror (on 127.0.0.1) goes to a proxy that is not there.
        only_loopback(&mut cmd);
        cmd
    }

    /// Runs `cmd`; a failure or timeout panics with everything seen so far.
    pub async fn must(&mut self, cmd: Command, server: &Server) -> Run {
        let run = run(cmd).await;
        self.transcript.push(run.report());
        assert!(
            run.ok(),
            "a client command failed\n{}\n=== pkgmirror log\n{}",
            self.transcript.join("\n\n"),
            server.logs()
        );
        run
    }

    /// Asserts that `python` (with `pythonpath`, if any) imports the tree, at the expected
    /// versions, from inside this sandbox, and that `lib_b` was built from its sdist.
    pub async fn check_installed(&mut self, python: &Path, pythonpath: Option<&Path>, server: &Server) {
        const SCRIPT: &str = r#"
import importlib.metadata as md, json, sys
import app, lib_a, lib_b
out = {}
for module, dist in [(app, "app"), (lib_a, "lib-a"), (lib_b, "lib_b")]:
    d = md.distribution(dist)
    generator = [l for l in (d.read_text("WHEEL") or "").splitlines() if l.startswith("Generator:")]
    out[module.__name__] = {
        "module": module.__version__,
        "dist": d.version,
        "file": module.__file__,
        "generator": generator[0].split(":", 1)[1].strip() if generator else None,
    }
print(json.dumps(out))
"#;
        let mut cmd = self.command(python);
        cmd.args(["-c", SCRIPT]);
        if let Some(dir) = pythonpath {
            cmd.env("PYTHONPATH", dir);
        }
        let run = self.must(cmd, server).await;
        let found: serde_json::Value =
            serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.report()));
        let context = || self.transcript.join("\n\n");
        for (module, version) in TREE_INSTALLED {
            let entry = &found[module];
            assert_eq!(entry["module"], version, "{module}: {found}\n{}", context());
            assert_eq!(entry["dist"], version, "{module}: {found}\n{}", context());
            let file = entry["file"].as_str().unwrap_or_default();
            assert!(
                Path::new(file).starts_with(self.dir.path()),
                "{module} was imported from {file}, outside the install under test\n{}",
                context()
            );
        }
        // app came as its wheel (made here), lib_b was built by its sdist's backend.
        assert_eq!(found["app"]["generator"], WHEEL_GENERATOR, "{found}");
        assert_eq!(found["lib_a"]["generator"], WHEEL_GENERATOR, "{found}");
        assert_eq!(found["lib_b"]["generator"], BACKEND_GENERATOR, "{found}");
    }
}

// ---------------------------------------------------------------------------------------------
// The four clients

#[derive(Clone, Copy, Debug)]
pub enum Client {
    Pip,
    Uv,
    Poetry,
    Pdm,
}

impl Client {
    pub const ALL: [Client; 4] = [Client::Pip, Client::Uv, Client::Poetry, Client::Pdm];

    /// The tool a test with this client requires.
    pub fn tool(self) -> Tool {
        match self {
            Client::Pip => Tool::Pip,
            Client::Uv => Tool::Uv,
            Client::Poetry => Tool::Poetry,
            Client::Pdm => Tool::Pdm,
        }
    }
}

/// A consumer project depending on `requirements`, for poetry and pdm; `source` is the tool's
/// table that makes the mirror its only index.
pub fn write_project(dir: &Path, requirements: &[&str], source: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let dependencies: Vec<String> = requirements.iter().map(|r| format!("{r:?}")).collect();
    let pyproject = format!(
        "[project]\nname = \"consumer\"\nversion = \"0.0.0\"\nrequires-python = \">=3.11\"\n\
         dependencies = [{}]\n\n{source}",
        dependencies.join(", ")
    );
    std::fs::write(dir.join("pyproject.toml"), pyproject).unwrap();
}

/// Installs `app` (and so the tree) with `client` from the mirror at `index` into a fresh
/// sandbox, then checks what got installed.
pub async fn install(client: Client, index: &str, server: &Server) {
    let mut sandbox = Sandbox::new();
    let installed = install_in(&mut sandbox, client, index, &["app"], server).await;
    let (python, pythonpath) = (installed.python, installed.pythonpath);
    sandbox
        .check_installed(&python, pythonpath.as_deref(), server)
        .await;
    // Shown by `cargo test -- --nocapture`, and for a test that fails later.
    println!("{}", sandbox.transcript.join("\n\n"));
}

/// Where an install put things: the python to import them with, and the directory to put on
/// `PYTHONPATH` (pip's `--target`).
pub struct Installed {
    pub python: PathBuf,
    pub pythonpath: Option<PathBuf>,
}

impl Installed {
    /// Every distribution installed in the sandbox (not the interpreter's own, nor the
    /// installers that seed a venv), by normalized name, read by the installed python itself.
    pub async fn versions(&self, sandbox: &mut Sandbox, server: &Server) -> BTreeMap<String, String> {
        const SCRIPT: &str = r#"
import importlib.metadata as md, json, os, re, sys
root = os.path.realpath(sys.argv[1])
found = {}
for d in md.distributions():
    where = os.path.realpath(str(d.locate_file("")))
    name = re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower()
    if where.startswith(root) and name not in ("pip", "setuptools", "wheel"):
        found[name] = d.version
print(json.dumps(found))
"#;
        let mut cmd = sandbox.command(&self.python);
        cmd.args(["-c", SCRIPT]).arg(sandbox.dir.path());
        if let Some(dir) = &self.pythonpath {
            cmd.env("PYTHONPATH", dir);
        }
        let run = sandbox.must(cmd, server).await;
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.report()))
    }
}

/// What `client` installs of `requirements` from the mirror at `index`, in a fresh sandbox: each
/// distribution's version by normalized name.
pub async fn installed_versions(
    client: Client,
    index: &str,
    requirements: &[&str],
    server: &Server,
) -> BTreeMap<String, String> {
    let mut sandbox = Sandbox::new();
    let installed = install_in(&mut sandbox, client, index, requirements, server).await;
    installed.versions(&mut sandbox, server).await
}

/// Installs `project` with every client this machine has, each in a fresh sandbox, and checks
/// that it came out at `version`.
pub async fn every_client_installs(index: &str, project: &str, version: &str, server: &Server) {
    for client in Client::ALL {
        if tools::require(client.tool()).is_none() {
            continue;
        }
        let versions = installed_versions(client, index, &[project], server).await;
        assert_eq!(
            versions.get(project).map(String::as_str),
            Some(version),
            "{client:?}: {versions:?}"
        );
    }
}

/// Installs `requirements` with `client` from the mirror at `index` inside `sandbox`.
pub async fn install_in(
    sandbox: &mut Sandbox,
    client: Client,
    index: &str,
    requirements: &[&str],
    server: &Server,
) -> Installed {
    match client {
        Client::Pip => {
            let target = sandbox.path("target");
            let mut pip = sandbox.command(tools::path(Tool::Pip));
            pip.args(["-m", "pip", "install", "--index-url", index, "--target"])
                .arg(&target)
                .arg("--cache-dir")
                .arg(sandbox.path("cache/pip"))
                .args(["--progress-bar", "off"])
                .args(requirements);
            sandbox.must(pip, server).await;
            Installed {
                python: python(),
                pythonpath: Some(target),
            }
        }
        Client::Uv => {
            let venv = sandbox.path("venv");
            let mut create = sandbox.command(tools::path(Tool::Uv));
            create.arg("venv").arg(&venv).arg("--python").arg(python());
            sandbox.must(create, server).await;
            let mut uv = sandbox.command(tools::path(Tool::Uv));
            uv.args(["pip", "install", "--python"])
                .arg(venv.join("bin/python"))
                .args(["--default-index", index])
                .args(requirements);
            sandbox.must(uv, server).await;
            Installed {
                python: venv.join("bin/python"),
                pythonpath: None,
            }
        }
        Client::Poetry => {
            let project = sandbox.path("project");
            write_project(
                &project,
                requirements,
                &format!(
                    "[tool.poetry]\npackage-mode = false\n\n[[tool.poetry.source]]\n\
                     name = \"mirror\"\nurl = \"{index}\"\npriority = \"primary\"\n"
                ),
            );
            let mut poetry = sandbox.command(tools::path(Tool::Poetry));
            poetry
                .args(["install", "--no-root", "--no-interaction", "-v"])
                .current_dir(&project);
            sandbox.must(poetry, server).await;
            Installed {
                python: project.join(".venv/bin/python"),
                pythonpath: None,
            }
        }
        Client::Pdm => {
            let project = sandbox.path("project");
            write_project(
                &project,
                requirements,
                &format!(
                    "[tool.pdm]\ndistribution = false\n\n[[tool.pdm.source]]\n\
                     name = \"pypi\"\nurl = \"{index}\"\n"
                ),
            );
            let venv_python = project.join(".venv/bin/python");
            let mut venv = sandbox.command(python());
            venv.args(["-m", "venv", "--without-pip"])
                .arg(project.join(".venv"));
            sandbox.must(venv, server).await;
            let mut pdm = sandbox.command(tools::path(Tool::Pdm));
            pdm.args(["install", "-v"])
                .env("PDM_PYTHON", &venv_python)
                .env("PDM_PYPI_URL", index)
                .current_dir(&project);
            sandbox.must(pdm, server).await;
            Installed {
                python: venv_python,
                pythonpath: None,
            }
        }
    }
}
