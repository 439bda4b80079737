//! Command line: parses arguments, loads the configuration and runs a
//! subcommand. No argument has an environment fallback: `config` alone
//! reads the environment, so that precedence lives in one place.
//!
//! To add a subcommand: a variant of `Command`, an arm in `run`, and a
//! function returning `ExitCode` that calls `load_config` (flatten
//! `Overrides` into its arguments if it takes the serve flags).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, CliOverrides, Loaded, LogConfig, LogFormat};

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
#[derive(Debug, Args)]
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
    if let Err(e) = init_tracing(&loaded.config.log) {
        eprintln!("pkgmirror: cannot start logging: {e}");
        return ExitCode::from(FAILURE);
    }
    match crate::app::serve(loaded.config) {
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
/// loading has already replaced with `RUST_LOG` when that is set.
pub fn init_tracing(log: &LogConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log.filter()?)
        .with_writer(std::io::stderr)
        // Colour codes would litter log files and journals.
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
}
