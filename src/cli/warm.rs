//! `pkgmirror warm`: read the lock files, run a [`Warmer`] against the server, draw its progress
//! on a terminal, print the summary.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use url::Url;

use super::{BAD_USAGE, FAILURE, load_config, print_stdout};
use crate::config::{CliOverrides, Config};
use crate::warm::lockfile::{self, LockFile};
use crate::warm::{Filters, Progress, Warmer};

#[derive(Debug, Args)]
pub(super) struct WarmArgs {
    /// requirements*.txt, pylock.toml, uv.lock, poetry.lock, pdm.lock, rebar.lock or mix.lock.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A requirements file, as pip's `-r` (the same as naming it).
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    requirements: Vec<PathBuf>,
    /// The server to warm [default: server.public_url, else http(s)://server.listen]. A token
    /// goes in it as pip's does: http://token:TOKEN@host/.
    #[arg(long, value_name = "URL")]
    server: Option<Url>,
    /// Fetches under way at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    jobs: usize,
    /// For requirements that are not locked: the CPython version (X.Y) to fetch wheels for.
    #[arg(long, value_name = "X.Y")]
    python_version: Option<String>,
    /// For requirements that are not locked: a wheel platform tag to fetch wheels for (`*`
    /// matches anything; repeatable), e.g. 'manylinux*_x86_64'.
    #[arg(long = "platform", value_name = "TAG")]
    platforms: Vec<String>,
}

pub(super) fn warm(args: WarmArgs, config_file: Option<PathBuf>) -> ExitCode {
    let paths: Vec<PathBuf> = args.files.into_iter().chain(args.requirements).collect();
    if paths.is_empty() {
        eprintln!("pkgmirror: warm: name at least one lock or requirements file");
        return ExitCode::from(BAD_USAGE);
    }
    let python_version = match args.python_version.as_deref().map(pep440_rs::Version::from_str) {
        None => None,
        Some(Ok(version)) => Some(version),
        Some(Err(e)) => {
            eprintln!("pkgmirror: warm: --python-version: {e}");
            return ExitCode::from(BAD_USAGE);
        }
    };
    let mut locks: Vec<LockFile> = Vec::new();
    for path in &paths {
        match lockfile::read(path) {
            Ok(read) => locks.extend(read),
            Err(e) => {
                eprintln!("pkgmirror: warm: {e}");
                return ExitCode::from(BAD_USAGE);
            }
        }
    }
    let server = match args.server {
        Some(server) => server,
        None => {
            let overrides = CliOverrides {
                config_file,
                ..CliOverrides::default()
            };
            match load_config(&overrides).map(|loaded| configured_server(&loaded.config)) {
                Ok(Ok(url)) => url,
                Ok(Err(e)) => {
                    eprintln!("pkgmirror: warm: {e}");
                    return ExitCode::from(BAD_USAGE);
                }
                Err(code) => return code,
            }
        }
    };
    let filters = Filters {
        python_version,
        platforms: args.platforms,
    };
    let progress = Arc::new(Progress::default());
    let warmer = match Warmer::new(&server, args.jobs, filters, progress.clone()) {
        Ok(warmer) => warmer,
        Err(e) => {
            eprintln!("pkgmirror: warm: {e}");
            return ExitCode::from(BAD_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pkgmirror: cannot start a runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let report = runtime.block_on(async {
        let bar = std::io::stderr().is_terminal().then(|| drawn(progress.clone()));
        let report = warmer.run(&locks).await;
        if let Some((bar, drawing)) = bar {
            drawing.abort();
            bar.finish_and_clear();
        }
        report
    });
    let printed = print_stdout(&report.summary());
    if report.failures.is_empty() {
        printed
    } else {
        ExitCode::from(FAILURE)
    }
}

/// Where the configured server listens, as a client reaches it.
fn configured_server(config: &Config) -> Result<Url, String> {
    if let Some(url) = &config.server.public_url {
        return Ok(url.clone());
    }
    let listen = crate::warm::reachable(config.server.listen);
    let scheme = match config.server.tls_files() {
        Ok(Some(_)) => "https",
        _ => "http",
    };
    Url::parse(&format!("{scheme}://{listen}/")).map_err(|e| format!("server.listen {listen}: {e}"))
}

/// Draws `progress` on stderr until the task is aborted: files as the bar, bytes and rate beside
/// them.
fn drawn(progress: Arc<Progress>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let style = ProgressStyle::with_template(
        "{spinner} pages {prefix} files {pos}/{len} {wide_bar} {msg} [{elapsed}]",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    let drawn = bar.clone();
    let drawing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let started = std::time::Instant::now();
        loop {
            tick.tick().await;
            let now = progress.read();
            let bar = &drawn;
            bar.set_prefix(format!("{}/{}", now.pages_done, now.pages_total));
            bar.set_length(now.files_total);
            bar.set_position(now.files_done);
            let rate = now.bytes_done as f64 / started.elapsed().as_secs_f64().max(0.001);
            let failed = if now.failures > 0 {
                format!(", {} failed", now.failures)
            } else {
                String::new()
            };
            bar.set_message(format!(
                "{} of {}, {}/s{failed}",
                bytesize::ByteSize(now.bytes_done).display().iec(),
                bytesize::ByteSize(now.bytes_total).display().iec(),
                bytesize::ByteSize(rate as u64).display().iec(),
            ));
        }
    });
    (bar, drawing)
}
