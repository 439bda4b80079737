//! `pkgmirror export` and `pkgmirror import`: a data dir's cache carried as one tar file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::{FAILURE, Maintained, Overrides, open_data_dir, print_stdout, size_text};
use crate::cache::CacheCounters;
use crate::cache::bundle::{self, Moved, Stores};
use crate::config::CliOverrides;
use crate::pypi::name::normalize;
use crate::storage::PageStore;
use crate::storage::bundle::ExportFilter;
use crate::storage::data_dir;

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// The bundle to write (a tar file).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Only what was fetched or stored since then: a date (2026-11-30), a time (RFC 3339) or
    /// an age (7d). Import the full bundle first, then the incremental ones.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only this project (a PyPI or hex name; repeatable).
    #[arg(long = "project", value_name = "NAME")]
    projects: Vec<String>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// The bundle to read.
    bundle: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

const STOP_THE_SERVER: &str = "stop the server first (its page store cannot be shared)";

pub(super) fn export(args: ExportArgs, config_file: Option<PathBuf>) -> ExitCode {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(since) => since,
        Err(e) => {
            eprintln!("pkgmirror: export: --since: {e}");
            return ExitCode::from(super::BAD_USAGE);
        }
    };
    // A PyPI name is kept normalized; a hex name is already what it is.
    let projects = args
        .projects
        .iter()
        .flat_map(|p| [normalize(p), p.clone()])
        .collect();
    let filter = ExportFilter { projects, since };
    let overrides = args.overrides.into_cli_overrides(config_file);
    let (m, stores) = match opened(&overrides, "export", false) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let moved = m.runtime.block_on(async {
        let out = tokio::fs::File::create(&args.out)
            .await
            .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
        bundle::export(&stores, &filter, tokio::io::BufWriter::new(out))
            .await
            .map_err(|e| e.to_string())
    });
    match moved {
        Ok(moved) => print_stdout(&format!(
            "exported {} to {}\n",
            described(&moved),
            args.out.display()
        )),
        Err(e) => {
            // A partial bundle is never left where an import could take it.
            let _ = std::fs::remove_file(&args.out);
            eprintln!("pkgmirror: export: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

pub(super) fn import(args: ImportArgs, config_file: Option<PathBuf>) -> ExitCode {
    let overrides = args.overrides.into_cli_overrides(config_file);
    let (m, stores) = match opened(&overrides, "import", true) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let moved = m.runtime.block_on(async {
        let input = tokio::fs::File::open(&args.bundle)
            .await
            .map_err(|e| format!("cannot open {}: {e}", args.bundle.display()))?;
        bundle::import(
            &stores,
            tokio::io::BufReader::new(input),
            Arc::new(CacheCounters::default()),
        )
        .await
        .map_err(|e| e.to_string())
    });
    match moved {
        Ok(moved) => print_stdout(&format!(
            "imported {} from {}\n",
            described(&moved),
            args.bundle.display()
        )),
        Err(e) => {
            eprintln!("pkgmirror: import of {} refused: {e}", args.bundle.display());
            ExitCode::from(FAILURE)
        }
    }
}

/// The data dir under its lock (created for `import`), and its stores.
fn opened(overrides: &CliOverrides, command: &str, create: bool) -> Result<(Maintained, Stores), ExitCode> {
    let m = open_data_dir(overrides, command, STOP_THE_SERVER, create)?;
    let data_dir = &m.config.storage.data_dir;
    let pages = PageStore::open(
        &data_dir.join(data_dir::PAGES_FILE),
        &data_dir.join(data_dir::PAGE_BODIES_DIR),
    )
    .map_err(|e| {
        eprintln!("pkgmirror: cannot open the page store: {e}");
        ExitCode::from(FAILURE)
    })?;
    let stores = Stores {
        catalogue: m.catalogue.clone(),
        pages,
        blobs: m.store.store(),
        work_dir: data_dir.clone(),
    };
    Ok((m, stores))
}

fn described(moved: &Moved) -> String {
    format!(
        "{} projects, {} page entries and {} blobs ({})",
        moved.projects,
        moved.page_entries,
        moved.blobs,
        size_text(moved.bytes)
    )
}

/// `--since`: a date, an RFC 3339 time, or an age before now; unix seconds.
fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(age) = humantime::parse_duration(text) {
        return Ok(crate::cache::unix_now().saturating_sub(age.as_secs()));
    }
    let time = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&time)
        .map_err(|_| format!("{text:?} is neither a date (2026-11-30), a time (RFC 3339) nor an age (7d)"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_dates_times_and_ages() {
        assert_eq!(parse_since("2026-11-30"), Ok(1_795_996_800));
        assert_eq!(parse_since("2026-11-30T12:00:00Z"), Ok(1_796_040_000));
        let week_ago = parse_since("7d").unwrap();
        assert!(crate::cache::unix_now() - week_ago >= 7 * 86_400);
        assert!(parse_since("last tuesday").is_err());
    }
}
