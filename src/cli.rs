//! Command line: parses arguments, loads the configuration and runs a
//! subcommand. No argument has an environment fallback: `config` alone
//! reads the environment, so that precedence lives in one place.
//!
//! To add a subcommand: a variant of `Command`, an arm in `run`, and a
//! function returning `ExitCode` that calls `load_config` (flatten
//! `Overrides` into its arguments if it takes the serve flags).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::auth::tokens::{TokenError, TokenRecord, Tokens, grant};
use crate::cache::hosted::{FileChange, HostedError, change_file};
use crate::cache::maintenance;
use crate::config::{self, CliOverrides, Config, Loaded, LogConfig, LogFormat};
use crate::storage::Catalogue;
use crate::storage::blob::{BlobStore as _, ConfiguredStore, LocalBlobStore};
use crate::storage::browse::AdminLogEntry;
use crate::storage::catalogue::BlobStats;
use crate::storage::data_dir::{self, DataDirLock, LockError};

mod bundle;
mod warm;

/// Exit code of a runtime failure.
const FAILURE: u8 = 1;
/// Exit code of bad usage or bad configuration.
const BAD_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "pkgmirror",
    version,
    about = "Caching mirror of Python and hex package indexes"
)]
struct Cli {
    /// Configuration file [default: $PKGMIRROR_CONFIG, else ./pkgmirror.toml if it exists]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mirror server.
    Serve(Overrides),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect and maintain the data dir's blob store.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Access tokens (read, upload to hosted indexes, admin); safe while the server runs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Yank, unyank or delete a file of a hosted index; safe while the server runs (which shows
    /// the change within 30 s, or at once after `DELETE /cache/{project}`).
    #[command(subcommand)]
    Hosted(HostedCommand),
    /// Ask a running server for every page and file that lock files name (and check their
    /// hashes), so its cache holds them before builds need them.
    Warm(warm::WarmArgs),
    /// Write what the data dir has cached (pages, catalogue rows, blobs) to a bundle another
    /// node can import. Refuses while the server runs on the data dir.
    Export(bundle::ExportArgs),
    /// Verify every blob of a bundle and make this data dir serve what it holds, with no
    /// upstream. Refuses while the server runs on the data dir.
    Import(bundle::ImportArgs),
}

#[derive(Debug, Subcommand)]
enum HostedCommand {
    /// Yank a file (PEP 592): installers skip it unless asked for its version exactly.
    Yank {
        #[command(flatten)]
        file: HostedFileArgs,
        /// Why, shown to installers.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take a yank back.
    Unyank {
        #[command(flatten)]
        file: HostedFileArgs,
    },
    /// Remove a file from the index (its name stays hosted: upstreams never fill it in).
    Delete {
        #[command(flatten)]
        file: HostedFileArgs,
    },
}

#[derive(Debug, Args)]
struct HostedFileArgs {
    /// The hosted index (pypi.hosted).
    #[arg(long)]
    index: String,
    project: String,
    filename: String,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it: the only time it is shown.
    Create {
        /// A name to list and revoke it by (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: String,
        /// read, admin, upload:<hosted index>, upload:hex:<hosted hex repository> or upload:*
        /// (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Stop accepting it after this long, e.g. 90d.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// List every token's name, scopes, times and state (never the tokens themselves).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Revoke the active token with this name.
    Revoke {
        name: String,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Counts and bytes per ecosystem, from the catalogue; safe while the server runs.
    Stats {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Re-hash every stored blob; quarantine those whose bytes do not match their sha256.
    /// Refuses while the server runs on the data dir.
    Verify(Overrides),
    /// Local store: evict least-recently-used blobs until it fits storage.max_size, adopt or
    /// remove blobs without a catalogue row, drop rows without a blob. S3 and tiered: drop rows
    /// whose blob left the bucket (and fit the local tier to storage.max_size). Refuses while
    /// the server runs.
    Gc {
        /// Also delete bucket blobs this catalogue does not know, and multipart uploads and
        /// temporary objects abandoned for a day. Only for a bucket no other node uses.
        #[arg(long)]
        s3_orphans: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets redacted.
    Show {
        /// Print `key = value  # source` lines telling where each value comes from.
        #[arg(long)]
        sources: bool,
    },
}

/// Flags that override configuration keys; they win over every other layer.
#[derive(Debug, Default, Args)]
struct Overrides {
    /// Address to listen on (server.listen), e.g. 0.0.0.0:5000.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for cached data (storage.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Upstream simple index; the first is pypi.index_url, the others
    /// pypi.extra_index_urls. Replaces both keys (and pypi.extra_index_ttls).
    #[arg(long = "pypi-upstream", value_name = "URL")]
    pypi_upstreams: Vec<String>,
    /// Upstream hex repository (hex.upstream_url).
    #[arg(long, value_name = "URL")]
    hex_upstream: Option<String>,
    /// Log line format (log.format).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl Overrides {
    fn into_cli_overrides(self, config_file: Option<PathBuf>) -> CliOverrides {
        CliOverrides {
            config_file,
            listen: self.listen,
            data_dir: self.data_dir,
            pypi_upstreams: self.pypi_upstreams,
            hex_upstream: self.hex_upstream,
            log_format: self.log_format,
        }
    }
}

/// Runs the command line of the process.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version come this way too, on stdout with success.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(BAD_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(overrides) => serve(&overrides.into_cli_overrides(cli.config)),
        Command::Config(ConfigCommand::Show { sources }) => config_show(cli.config, sources),
        Command::Cache(CacheCommand::Stats { json, overrides }) => {
            cache_stats(&overrides.into_cli_overrides(cli.config), json)
        }
        Command::Cache(CacheCommand::Verify(overrides)) => {
            cache_verify(&overrides.into_cli_overrides(cli.config))
        }
        Command::Cache(CacheCommand::Gc {
            s3_orphans,
            overrides,
        }) => cache_gc(&overrides.into_cli_overrides(cli.config), s3_orphans),
        Command::Token(command) => token(command, cli.config),
        Command::Hosted(command) => hosted(command, cli.config),
        Command::Warm(args) => warm::warm(args, cli.config),
        Command::Export(args) => bundle::export(args, cli.config),
        Command::Import(args) => bundle::import(args, cli.config),
    }
}

/// Loads the configuration, or reports why not and gives the exit code.
fn load_config(overrides: &CliOverrides) -> Result<Loaded, ExitCode> {
    config::load(overrides).map_err(|e| {
        eprintln!("pkgmirror: bad config: {e}");
        ExitCode::from(BAD_USAGE)
    })
}

fn serve(overrides: &CliOverrides) -> ExitCode {
    let loaded = match load_config(overrides) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(reason) = loaded.config.server.check_admin_exposure() {
        eprintln!("pkgmirror: bad config: server.admin_token: {reason}");
        return ExitCode::from(BAD_USAGE);
    }
    let set_log_level = match init_tracing(&loaded.config.log) {
        Ok(set_log_level) => set_log_level,
        Err(e) => {
            eprintln!("pkgmirror: cannot start logging: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let again = overrides.clone();
    let read = Box::new(move || {
        crate::config::load(&again)
            .map(|loaded| loaded.config)
            .map_err(|e| e.to_string())
    });
    match crate::app::serve(loaded.config, read, set_log_level) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkgmirror: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

fn config_show(config_file: Option<PathBuf>, sources: bool) -> ExitCode {
    let overrides = CliOverrides {
        config_file,
        ..CliOverrides::default()
    };
    let loaded = match load_config(&overrides) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let text = if sources {
        config::render_sources(&loaded)
    } else {
        config::render_toml(&loaded.config)
    };
    print_stdout(&text)
}

/// The catalogue file of the configured data dir, which must exist: a data dir without one is
/// an error rather than a new empty catalogue, as most likely `--data-dir` names the wrong place.
fn existing_catalogue(config: &Config) -> Result<PathBuf, ExitCode> {
    let path = config.storage.data_dir.join(data_dir::CATALOGUE_FILE);
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "pkgmirror: no catalogue at {}: is storage.data_dir (--data-dir) right?",
        path.display()
    );
    Err(ExitCode::from(FAILURE))
}

fn open_catalogue(path: &Path) -> Result<Catalogue, ExitCode> {
    Catalogue::open(path).map_err(|e| {
        eprintln!("pkgmirror: cannot open {}: {e}", path.display());
        ExitCode::from(FAILURE)
    })
}

fn cache_stats(overrides: &CliOverrides, json: bool) -> ExitCode {
    let config = match load_config(overrides) {
        Ok(loaded) => loaded.config,
        Err(code) => return code,
    };
    // Reads the catalogue only (SQLite lets it read beside a running server): no lock, no blob
    // store, whose opening would clean up a running server's downloads.
    let catalogue = match existing_catalogue(&config).and_then(|path| open_catalogue(&path)) {
        Ok(catalogue) => catalogue,
        Err(code) => return code,
    };
    let stats = match catalogue.blob_stats() {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("pkgmirror: cannot read the catalogue: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let text = if json {
        stats_json(&config, &stats)
    } else {
        stats_text(&config, &stats)
    };
    print_stdout(&text)
}

/// Stored blobs as a share of every file request they answered: each was downloaded once (a
/// miss) and served `hits` times from the store. `None` before the first download.
fn stored_hit_ratio(stats: &BlobStats) -> Option<f64> {
    let lookups = stats.hits + stats.blobs;
    (lookups > 0).then(|| stats.hits as f64 / lookups as f64)
}

fn stats_json(config: &Config, stats: &BlobStats) -> String {
    let mut value = serde_json::json!(stats);
    value["data_dir"] = serde_json::json!(config.storage.data_dir);
    value["max_bytes"] = serde_json::json!(config.storage.max_size);
    value["hit_ratio"] = serde_json::json!(stored_hit_ratio(stats));
    format!("{value:#}\n")
}

fn stats_text(config: &Config, stats: &BlobStats) -> String {
    use std::fmt::Write as _;

    let size = |bytes: u64| ByteSize::b(bytes).display().iec().to_string();
    // `counts` (projects, files) is `None` where they mean nothing: unlisted blobs have neither.
    let row = |out: &mut String, name: &str, counts: Option<(u64, u64)>, blobs: u64, bytes: u64| {
        let (projects, files) = counts.map_or((String::new(), String::new()), |(p, f)| {
            (p.to_string(), f.to_string())
        });
        let _ = writeln!(
            out,
            "{name:<12}{projects:>10}{files:>10}{blobs:>10}{:>12}",
            size(bytes)
        );
    };
    let mut out = format!("data dir: {}\n", config.storage.data_dir.display());
    let _ = writeln!(
        out,
        "{:<12}{:>10}{:>10}{:>10}{:>12}",
        "ecosystem", "projects", "files", "blobs", "bytes"
    );
    for eco in &stats.ecosystems {
        let counts = Some((eco.projects, eco.files));
        row(&mut out, &eco.ecosystem, counts, eco.blobs, eco.blob_bytes);
    }
    row(
        &mut out,
        "unlisted",
        None,
        stats.unlisted_blobs,
        stats.unlisted_bytes,
    );
    let projects = stats.ecosystems.iter().map(|e| e.projects).sum();
    let files = stats.ecosystems.iter().map(|e| e.files).sum();
    row(
        &mut out,
        "total",
        Some((projects, files)),
        stats.blobs,
        stats.blob_bytes,
    );
    let _ = writeln!(
        out,
        "budget: {} of {} (storage.max_size)",
        size(stats.blob_bytes),
        size(config.storage.max_size)
    );
    match stored_hit_ratio(stats) {
        Some(ratio) => {
            let _ = writeln!(
                out,
                "hit ratio: {:.1}% ({} from the store, {} of the blobs stored)",
                ratio * 100.0,
                plural(stats.hits, "hit", "hits"),
                plural(stats.blobs, "download", "downloads")
            );
        }
        None => out.push_str("hit ratio: none yet (nothing downloaded)\n"),
    }
    out
}

/// What `cache verify` and `cache gc` work on, held under the data dir's lock.
struct Maintained {
    config: Config,
    catalogue: Catalogue,
    store: ConfiguredStore,
    runtime: tokio::runtime::Runtime,
    _lock: DataDirLock,
}

/// Loads the config and opens the data dir for `command`, refusing (with `advice`) while
/// another pkgmirror process, most likely the server, uses it.
fn open_for_maintenance(
    overrides: &CliOverrides,
    command: &str,
    advice: &str,
) -> Result<Maintained, ExitCode> {
    open_data_dir(overrides, command, advice, false)
}

/// [`open_for_maintenance`], creating the data dir and its catalogue when `create` (a new node
/// filled by `import`).
fn open_data_dir(
    overrides: &CliOverrides,
    command: &str,
    advice: &str,
    create: bool,
) -> Result<Maintained, ExitCode> {
    let config = load_config(overrides)?.config;
    let failure = |message: String| {
        eprintln!("pkgmirror: {message}");
        ExitCode::from(FAILURE)
    };
    // A command that ends never reloads its log filter.
    let _set_log_level =
        init_tracing(&config.log).map_err(|e| failure(format!("cannot start logging: {e}")))?;
    let data_dir = &config.storage.data_dir;
    // Checked before the lock file would create a data dir that is not there.
    let catalogue_path = if create {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| failure(format!("cannot create {}: {e}", data_dir.display())))?;
        data_dir.join(data_dir::CATALOGUE_FILE)
    } else {
        existing_catalogue(&config)?
    };
    let lock = DataDirLock::acquire(data_dir, command).map_err(|e| match e {
        held @ LockError::Held { .. } => failure(format!("{held}; {advice}")),
        other => failure(other.to_string()),
    })?;
    let catalogue = open_catalogue(&catalogue_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start a runtime: {e}")))?;
    // Safe under the lock: the spools it cleans up cannot belong to a running server.
    let blob_dir = data_dir.join(data_dir::BLOBS_DIR);
    let store = runtime
        .block_on(ConfiguredStore::open(
            &config.storage,
            &blob_dir,
            || catalogue.blob_last_access().unwrap_or_default(),
            runtime.handle().clone(),
        ))
        .map_err(|e| {
            failure(format!(
                "cannot open the {} blob store (local part in {}): {e}",
                config.storage.backend.as_str(),
                blob_dir.display()
            ))
        })?;
    Ok(Maintained {
        config,
        catalogue,
        store,
        runtime,
        _lock: lock,
    })
}

fn token(mut command: TokenCommand, config_file: Option<PathBuf>) -> ExitCode {
    let overrides = match &mut command {
        TokenCommand::Create { overrides, .. }
        | TokenCommand::List { overrides, .. }
        | TokenCommand::Revoke { overrides, .. } => std::mem::take(overrides),
    };
    let overrides = overrides.into_cli_overrides(config_file);
    let config = match load_config(&overrides) {
        Ok(loaded) => loaded.config,
        Err(code) => return code,
    };
    let fail = |code: u8, message: String| {
        eprintln!("pkgmirror: {message}");
        ExitCode::from(code)
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(FAILURE, format!("cannot start a runtime: {e}")),
    };
    let tokens = match runtime.block_on(crate::storage::records::open(&config.storage)) {
        Ok(records) => Tokens::new(records),
        Err(e) => return fail(FAILURE, format!("cannot open the token store: {e}")),
    };
    let now = crate::cache::unix_now();
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            ..
        } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let (scopes, expires_at) = match grant(&scopes, expires.as_deref(), now) {
                Ok(grant) => grant,
                Err(e) => return fail(BAD_USAGE, e.to_string()),
            };
            match runtime.block_on(tokens.create(&name, scopes, expires_at, now)) {
                Ok((record, token)) => {
                    log_cli_action(&config, "token-create", &record.name, "ok");
                    print_stdout(&format!("{token}\n"))
                }
                Err(e @ (TokenError::InvalidName(_) | TokenError::NoScope | TokenError::NameTaken(_))) => {
                    fail(BAD_USAGE, e.to_string())
                }
                Err(e) => fail(FAILURE, e.to_string()),
            }
        }
        TokenCommand::List { json, .. } => match runtime.block_on(tokens.list()) {
            Ok(list) if json => print_stdout(&format!("{}\n", tokens_json(&list, now))),
            Ok(list) => print_stdout(&tokens_text(&list, now)),
            Err(e) => fail(FAILURE, e.to_string()),
        },
        TokenCommand::Revoke { name, .. } => match runtime.block_on(tokens.revoke(&name, now)) {
            Ok(revoked) => {
                log_cli_action(&config, "token-revoke", &name, "ok");
                print_stdout(&format!(
                    "revoked {}\n",
                    plural(revoked.len() as u64, "token", "tokens")
                ))
            }
            Err(e @ TokenError::NotFound(_)) => fail(BAD_USAGE, e.to_string()),
            Err(e) => fail(FAILURE, e.to_string()),
        },
    }
}

fn hosted(command: HostedCommand, config_file: Option<PathBuf>) -> ExitCode {
    let (args, change, action) = match command {
        HostedCommand::Yank { file, reason } => (file, FileChange::Yank(reason), "hosted-yank"),
        HostedCommand::Unyank { file } => (file, FileChange::Unyank, "hosted-unyank"),
        HostedCommand::Delete { file } => (file, FileChange::Delete, "hosted-delete"),
    };
    let HostedFileArgs {
        index,
        project,
        filename,
        overrides,
    } = args;
    let config = match load_config(&overrides.into_cli_overrides(config_file)) {
        Ok(loaded) => loaded.config,
        Err(code) => return code,
    };
    let fail = |code: u8, message: String| {
        eprintln!("pkgmirror: {message}");
        ExitCode::from(code)
    };
    if !config.pypi.hosted.iter().any(|h| h.name == index) {
        return fail(
            BAD_USAGE,
            format!("no hosted index is named {index:?} (pypi.hosted)"),
        );
    }
    let project = crate::pypi::name::normalize(&project);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(FAILURE, format!("cannot start a runtime: {e}")),
    };
    let catalogue = match Catalogue::open(&config.storage.data_dir.join(data_dir::CATALOGUE_FILE)) {
        Ok(catalogue) => catalogue,
        Err(e) => return fail(FAILURE, format!("cannot open the catalogue: {e}")),
    };
    let changed = runtime.block_on(async {
        let records = crate::storage::records::open(&config.storage).await?;
        change_file(records.as_ref(), &catalogue, &index, &project, &filename, &change).await
    });
    let target = format!("{index}/{project}/{filename}");
    match changed {
        Ok(_) => {
            log_cli_action(&config, action, &target, "ok");
            print_stdout(&format!("{action} {target}: done\n"))
        }
        Err(e @ HostedError::NotFound(_)) => fail(BAD_USAGE, e.to_string()),
        Err(e) => fail(FAILURE, e.to_string()),
    }
}

/// Records a change made from the command line in the data dir's admin log.
fn log_cli_action(config: &Config, action: &str, name: &str, outcome: &str) {
    let entry = AdminLogEntry {
        at: crate::cache::unix_now(),
        actor: "command line".to_owned(),
        action: action.to_owned(),
        target: Some(name.to_owned()),
        outcome: outcome.to_owned(),
    };
    let logged = std::fs::create_dir_all(&config.storage.data_dir)
        .map_err(crate::storage::StorageError::from)
        .and_then(|()| Catalogue::open(&config.storage.data_dir.join(data_dir::CATALOGUE_FILE)))
        .and_then(|catalogue| catalogue.record_admin_action(&entry));
    if let Err(e) = logged {
        eprintln!("pkgmirror: warning: the admin log could not record this: {e}");
    }
}

fn when(at: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)).to_string()
}

fn tokens_json(list: &[TokenRecord], now: u64) -> String {
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "scopes": t.scopes,
                "created": when(t.created_at),
                "expires": t.expires_at.map(when),
                "revoked": t.revoked_at.map(when),
                "state": t.state(now),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

fn tokens_text(list: &[TokenRecord], now: u64) -> String {
    if list.is_empty() {
        return "no tokens\n".to_owned();
    }
    let mut out = format!(
        "{:<20} {:<8} {:<21} {:<21} scopes\n",
        "name", "state", "created", "expires"
    );
    for t in list {
        let scopes: Vec<String> = t.scopes.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "{:<20} {:<8} {:<21} {:<21} {}\n",
            t.name,
            t.state(now),
            when(t.created_at),
            t.expires_at.map_or_else(|| "never".to_owned(), when),
            scopes.join(" ")
        ));
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn cache_verify(overrides: &CliOverrides) -> ExitCode {
    let m = match open_for_maintenance(
        overrides,
        "cache verify",
        "stop it first, then run pkgmirror cache verify again",
    ) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let report = match m
        .runtime
        .block_on(maintenance::verify(m.store.store().as_ref(), &m.catalogue))
    {
        Ok(report) => report,
        Err(e) => {
            eprintln!("pkgmirror: cache verify failed: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let mut out = format!(
        "checked {} ({})\n",
        plural(report.checked, "blob", "blobs"),
        ByteSize::b(report.checked_bytes).display().iec()
    );
    if report.quarantined.is_empty() {
        out.push_str("all blobs match their sha256\n");
    } else {
        out.push_str(&format!(
            "quarantined {} whose bytes do not match the sha256 it is stored under (moved to {}; the next request downloads it again):\n",
            plural(report.quarantined.len() as u64, "blob", "blobs"),
            quarantine_place(&m.store)
        ));
        for key in &report.quarantined {
            out.push_str(&format!("  {key}\n"));
        }
    }
    if report.unrecorded > 0 || report.missing > 0 {
        out.push_str(&format!(
            "{} without a catalogue row, {} without a blob: pkgmirror cache gc (or the server's next start) fixes them\n",
            plural(report.unrecorded, "blob", "blobs"),
            plural(report.missing, "catalogue row", "catalogue rows")
        ));
    }
    let printed = print_stdout(&out);
    if report.quarantined.is_empty() {
        printed
    } else {
        // Scripts (and cron mails) see the exit status: the store held damaged blobs.
        eprintln!(
            "pkgmirror: cache verify: {} did not match its sha256 and {} quarantined",
            plural(report.quarantined.len() as u64, "blob", "blobs"),
            if report.quarantined.len() == 1 {
                "was"
            } else {
                "were"
            }
        );
        ExitCode::from(FAILURE)
    }
}

/// Where `cache verify` moves damaged blobs, in words.
fn quarantine_place(store: &ConfiguredStore) -> String {
    let bucket = |s3: &crate::storage::blob::S3BlobStore| format!("quarantine/ in {}", s3.location());
    match store {
        ConfiguredStore::Local(local) => local.quarantine_dir().display().to_string(),
        ConfiguredStore::S3(s3) => bucket(s3),
        ConfiguredStore::Tiered(tiered) => format!(
            "{} or {}",
            tiered.l1().quarantine_dir().display(),
            bucket(tiered.s3())
        ),
    }
}

fn cache_gc(overrides: &CliOverrides, s3_orphans: bool) -> ExitCode {
    let m = match open_for_maintenance(
        overrides,
        "cache gc",
        "stop it first, or leave it be: a running server keeps the store within storage.max_size itself",
    ) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if s3_orphans && m.store.s3().is_none() {
        eprintln!("pkgmirror: --s3-orphans needs storage.backend = \"s3\" or \"tiered\"");
        return ExitCode::from(BAD_USAGE);
    }
    let out = match &m.store {
        ConfiguredStore::Local(local) => gc_local(&m, local.as_ref()),
        ConfiguredStore::S3(s3) => gc_bucket(&m, s3, s3_orphans, None),
        ConfiguredStore::Tiered(tiered) => gc_bucket(&m, tiered.s3(), s3_orphans, Some(tiered)),
    };
    match out {
        Ok(out) => print_stdout(&out),
        Err(e) => {
            eprintln!("pkgmirror: cache gc failed: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

fn size_text(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

fn gc_local(m: &Maintained, store: &LocalBlobStore) -> Result<String, crate::cache::CacheError> {
    let max_bytes = m.config.storage.max_size;
    let (reconciled, evicted) = m.runtime.block_on(async {
        // Orphans first, so the budget is checked against what really is stored.
        let reconciled = maintenance::reconcile(store, &m.catalogue).await?;
        let evicted =
            maintenance::evict_to_budget(store, &m.catalogue, max_bytes, &Default::default()).await?;
        Ok::<_, crate::cache::CacheError>((reconciled, evicted))
    })?;
    let mut out = format!(
        "found {}; adopted {} without a catalogue row, removed {} whose bytes did not match their name, dropped {} without a blob\n",
        plural(reconciled.blobs, "blob", "blobs"),
        reconciled.adopted,
        reconciled.removed,
        plural(reconciled.rows_dropped, "catalogue row", "catalogue rows"),
    );
    if evicted.evicted.is_empty() {
        out.push_str("nothing to evict\n");
    } else {
        out.push_str(&format!(
            "evicted {} ({}), least recently used first\n",
            plural(evicted.evicted.len() as u64, "blob", "blobs"),
            size_text(evicted.evicted_bytes)
        ));
    }
    out.push_str(&format!(
        "now {} of {} (storage.max_size)\n",
        size_text(evicted.bytes_after),
        size_text(max_bytes)
    ));
    Ok(out)
}

fn gc_bucket(
    m: &Maintained,
    s3: &crate::storage::blob::S3BlobStore,
    s3_orphans: bool,
    tiered: Option<&crate::storage::blob::TieredBlobStore>,
) -> Result<String, crate::cache::CacheError> {
    let report = m
        .runtime
        .block_on(maintenance::collect_bucket_garbage(s3, &m.catalogue, s3_orphans))?;
    let mut out = format!(
        "found {} in {}; dropped {} without a blob\n",
        plural(report.blobs, "blob", "blobs"),
        s3.location(),
        plural(report.rows_dropped, "catalogue row", "catalogue rows"),
    );
    if s3_orphans {
        out.push_str(&format!(
            "deleted {} no catalogue row knows; aborted {}, removed {} left by processes that died\n",
            plural(report.orphans_removed, "blob", "blobs"),
            plural(report.uploads_aborted, "abandoned upload", "abandoned uploads"),
            plural(
                report.temporaries_removed,
                "temporary object",
                "temporary objects"
            ),
        ));
    } else if report.orphans > 0 {
        out.push_str(&format!(
            "{} no catalogue row of this node knows (other nodes' on a shared bucket); --s3-orphans deletes them\n",
            plural(report.orphans, "blob", "blobs"),
        ));
    }
    if let Some(tiered) = tiered {
        let evicted = m.runtime.block_on(tiered.evict_to_budget());
        out.push_str(&format!(
            "local tier: evicted {}",
            plural(evicted.len() as u64, "blob", "blobs")
        ));
        if let Some(stats) = tiered.tier_stats() {
            out.push_str(&format!(
                "; now {} of {} (storage.max_size)",
                size_text(stats.bytes),
                size_text(stats.max_bytes)
            ));
        }
        out.push('\n');
    }
    Ok(out)
}

/// Prints without panicking when stdout is closed (`| head`).
fn print_stdout(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkgmirror: cannot write output: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

/// Installs the global tracing subscriber: human-readable or JSON lines on
/// stderr (stdout stays for command output), filtered by `log.level`, which
/// loading has already replaced with `RUST_LOG` when that is set. Returns what
/// puts another `log.level` in force (a reload).
pub fn init_tracing(
    log: &LogConfig,
) -> Result<crate::reload::SetLogLevel, Box<dyn std::error::Error + Send + Sync>> {
    use tracing_subscriber::prelude::*;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes would litter log files and journals.
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match log.format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log.filter()?);
    tracing_subscriber::registry()
        .with(filter)
        .with(lines.with_filter(tracing_subscriber::filter::filter_fn(
            crate::http::listener::log_filter,
        )))
        .try_init()?;
    let level = log.clone();
    // (With `RUST_LOG` set, a reload reads it again in place of `log.level`.)
    Ok(Box::new(move |new_level: &str| {
        let filter = LogConfig {
            level: new_level.to_owned(),
            ..level.clone()
        }
        .filter()?;
        handle
            .reload(filter)
            .map_err(|e| format!("cannot set log.level: {e}"))
    }))
}
