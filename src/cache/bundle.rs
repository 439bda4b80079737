//! Export bundles: what a node has cached, carried to another node (one with no upstream at all)
//! as one tar file.
//!
//! A bundle holds, in this order: `manifest.json` (what follows, with the sha256 and size of
//! every member), `catalogue.sqlite3` (the chosen projects' catalogue rows and their page-store
//! entries, see `storage::bundle`), then `blobs/{sha256}` for every blob those rows name. Import
//! reads it as a stream: every blob goes through the ingest path with the sha256 it must have,
//! so a corrupt one is refused and named; only when every blob is verified are the rows and
//! pages merged, and the blobs that import stored are removed again if anything failed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio_tar::{Archive, Builder, EntryType, Header};
use tokio_util::io::{ReaderStream, StreamReader};

use super::ingest::{Ingest, IngestError, Kept, SizeLimit};
use super::{CacheCounters, blocking, unix_now};
use crate::ecosystem::Ecosystem;
use crate::storage::blob::{BlobBody, BlobStore};
use crate::storage::bundle::{BundleCatalogue, ExportFilter};
use crate::storage::{Catalogue, PageStore, StorageError};

/// The bundle format this code writes and reads.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const CATALOGUE: &str = "catalogue.sqlite3";
const BLOBS: &str = "blobs/";
/// The manifest is read whole: a bundle's manifest is a few hundred bytes per blob.
const MANIFEST_MAX: u64 = 256 * 1024 * 1024;
/// Page-store entries moved per transaction.
const PAGE_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Cache(#[from] super::CacheError),
    #[error("writing the bundle: {0}")]
    Write(std::io::Error),
    #[error("reading the bundle: {0}")]
    Read(std::io::Error),
    #[error("the bundle is not one pkgmirror can import: {0}")]
    Invalid(String),
    #[error("blob {sha256} ({names}) in the bundle is corrupt: {reason}")]
    CorruptBlob {
        sha256: String,
        names: String,
        reason: String,
    },
    #[error("the blob store could not keep blob {sha256}: {reason}")]
    Unstored { sha256: String, reason: String },
}

/// What a bundle holds, written first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Unix seconds.
    pub created_at: u64,
    /// Only what was recorded or stored since then (unix seconds): an incremental bundle.
    pub since: Option<u64>,
    /// The projects asked for (empty: every cached one).
    pub projects: Vec<String>,
    pub catalogue: Member,
    pub blobs: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub sha256: String,
    pub size: u64,
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Moved {
    pub projects: u64,
    pub page_entries: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// The stores of one data dir.
#[derive(Clone)]
pub struct Stores {
    pub catalogue: Catalogue,
    pub pages: PageStore,
    pub blobs: Arc<dyn BlobStore>,
    /// Where temporary files go (the data dir: the bundle's catalogue file is written there).
    pub work_dir: PathBuf,
}

/// A temporary file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(dir: &Path, what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self(dir.join(format!(".{what}-{}-{nanos}.sqlite3", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// Which project a page-store page belongs to, or `None` for a page of no project (the
/// project list, hex's `/names`, docs and installers).
fn page_project(ecosystem: &str, page: &str) -> Option<String> {
    match Ecosystem::parse(ecosystem)? {
        Ecosystem::Pypi => {
            // A view's pages are kept under `@{view}/{page}`.
            let page = match page.strip_prefix('@') {
                Some(rest) => rest.split_once('/')?.1,
                None => page,
            };
            crate::pypi::name::validate_project_name(page).ok()?;
            Some(page.to_owned())
        }
        Ecosystem::Hex => page.strip_prefix("/packages/").map(str::to_owned),
    }
}

/// Writes a bundle of what `filter` chooses to `out`.
pub async fn export(
    stores: &Stores,
    filter: &ExportFilter,
    out: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<Moved, BundleError> {
    let file = TempFile::new(&stores.work_dir, "export");
    let path = file.0.clone();
    let (catalogue, pages) = (stores.catalogue.clone(), stores.pages.clone());
    let chosen_filter = filter.clone();
    let (chosen, page_entries, pointed) = blocking(move || {
        BundleCatalogue::open(&path)?.close()?;
        let chosen = catalogue.export_rows(&path, &chosen_filter)?;
        let bundle = BundleCatalogue::open(&path)?;
        let names: HashSet<(String, String)> = chosen.projects.iter().cloned().collect();
        let every = chosen_filter.projects.is_empty();
        let mut pointed = Vec::new();
        let entries = pages.export_entries(
            |ecosystem, page| match page_project(ecosystem, page) {
                Some(project) => names.contains(&(ecosystem.to_owned(), project)),
                None => every,
            },
            PAGE_BATCH,
            |entries| {
                pointed.extend(entries.iter().filter_map(blob_pointed_at));
                bundle.add_page_entries(&entries)
            },
        )?;
        bundle.close()?;
        Ok((chosen, entries, pointed))
    })
    .await?;
    // Blobs the hex pages point at (docs, installers) travel with them.
    let mut blobs: BTreeMap<String, u64> = chosen.blobs.into_iter().collect();
    for sha256 in pointed {
        let catalogue = stores.catalogue.clone();
        if let Some((sha256, size)) = blocking(move || catalogue.stored_blob(&sha256)).await? {
            blobs.insert(sha256, size);
        }
    }
    let catalogue = hashed_file(&file.0).await?;
    let manifest = Manifest {
        format: FORMAT,
        created_at: unix_now(),
        since: filter.since,
        projects: filter.projects.clone(),
        catalogue,
        blobs: blobs
            .iter()
            .map(|(sha256, size)| Member {
                sha256: sha256.clone(),
                size: *size,
            })
            .collect(),
    };
    let mut tar = Builder::new(out);
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Invalid(e.to_string()))?;
    append(
        &mut tar,
        MANIFEST,
        manifest_bytes.len() as u64,
        &manifest_bytes[..],
    )
    .await?;
    let db = tokio::fs::File::open(&file.0).await.map_err(BundleError::Read)?;
    append(&mut tar, CATALOGUE, manifest.catalogue.size, db).await?;
    let mut moved = Moved {
        projects: manifest_projects(&file.0).await?,
        page_entries,
        ..Moved::default()
    };
    for member in &manifest.blobs {
        let reader = blob_reader(stores.blobs.as_ref(), &member.sha256).await?;
        append(
            &mut tar,
            &format!("{BLOBS}{}", member.sha256),
            member.size,
            reader,
        )
        .await?;
        moved.blobs += 1;
        moved.bytes += member.size;
    }
    tar.finish().await.map_err(BundleError::Write)?;
    let mut out = tar.into_inner().await.map_err(BundleError::Write)?;
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(BundleError::Write)?;
    Ok(moved)
}

async fn manifest_projects(path: &Path) -> Result<u64, BundleError> {
    let path = path.to_owned();
    Ok(blocking(move || Ok(BundleCatalogue::open(&path)?.projects()?.len() as u64)).await?)
}

/// The sha256 a blob-form page's body names.
fn blob_pointed_at(entry: &crate::storage::bundle::PageEntry) -> Option<String> {
    use crate::storage::bundle::PageEntryKind;
    if entry.kind != PageEntryKind::Page || entry.key != crate::storage::pages::PageForm::Blob.as_str() {
        return None;
    }
    let page = crate::storage::pages::StoredPage::decode(bytes::Bytes::from(entry.value.clone())).ok()?;
    let sha256 = std::str::from_utf8(&page.identity).ok()?.trim().to_owned();
    crate::storage::blob::validate_key(&sha256).ok()?;
    Some(sha256)
}

async fn hashed_file(path: &Path) -> Result<Member, BundleError> {
    let mut file = tokio::fs::File::open(path).await.map_err(BundleError::Read)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).await.map_err(BundleError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(Member {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

async fn append<W: AsyncWrite + Unpin + Send + 'static>(
    tar: &mut Builder<W>,
    name: &str,
    size: u64,
    data: impl AsyncRead + Unpin,
) -> Result<(), BundleError> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(unix_now());
    header.set_cksum();
    tar.append_data(&mut header, name, data)
        .await
        .map_err(BundleError::Write)
}

/// A stored blob as a reader.
async fn blob_reader(
    store: &dyn BlobStore,
    sha256: &str,
) -> Result<Box<dyn AsyncRead + Unpin + Send>, BundleError> {
    let body = store
        .get(sha256, None)
        .await
        .map_err(|e| BundleError::Storage(StorageError::Io(std::io::Error::other(e.to_string()))))?
        .ok_or_else(|| {
            BundleError::Invalid(format!("blob {sha256} is recorded but not in the blob store"))
        })?;
    Ok(match body {
        BlobBody::File { file, .. } => Box::new(tokio::fs::File::from_std(file)),
        BlobBody::Stream { stream, .. } => Box::new(StreamReader::new(stream.map_err(std::io::Error::other))),
    })
}

/// Reads the bundle from `input` into the stores.
pub async fn import(
    stores: &Stores,
    input: impl AsyncRead + Unpin + Send,
    counters: Arc<CacheCounters>,
) -> Result<Moved, BundleError> {
    let ingest = Ingest::new(stores.blobs.clone(), stores.catalogue.clone(), counters);
    let file = TempFile::new(&stores.work_dir, "import");
    let mut stored_here = Vec::new();
    let result = import_into(stores, &ingest, input, &file.0, &mut stored_here).await;
    if result.is_err() && !stored_here.is_empty() {
        // Nothing of a refused bundle stays: the blobs it brought go again.
        for sha256 in &stored_here {
            if let Err(e) = stores.blobs.delete(sha256).await {
                tracing::warn!(%sha256, error = %e, "could not remove a blob of a refused bundle");
            }
        }
        let catalogue = stores.catalogue.clone();
        let keys = stored_here.clone();
        let _ = blocking(move || catalogue.delete_blob_rows(&keys)).await;
    }
    result
}

async fn import_into(
    stores: &Stores,
    ingest: &Ingest,
    input: impl AsyncRead + Unpin + Send,
    db_path: &Path,
    stored_here: &mut Vec<String>,
) -> Result<Moved, BundleError> {
    let mut archive = Archive::new(input);
    let mut entries = archive.entries().map_err(BundleError::Read)?;

    let mut entry = next(&mut entries)
        .await?
        .ok_or_else(|| BundleError::Invalid("it is empty".into()))?;
    if entry_name(&entry)? != MANIFEST {
        return Err(BundleError::Invalid(format!("it does not start with {MANIFEST}")));
    }
    if entry.effective_size() > MANIFEST_MAX {
        return Err(BundleError::Invalid(format!("{MANIFEST} is too large")));
    }
    let mut text = Vec::new();
    entry.read_to_end(&mut text).await.map_err(BundleError::Read)?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| BundleError::Invalid(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Invalid(format!(
            "format {} (this pkgmirror reads format {FORMAT})",
            manifest.format
        )));
    }

    let mut entry = next(&mut entries)
        .await?
        .ok_or_else(|| BundleError::Invalid(format!("{CATALOGUE} is missing")))?;
    if entry_name(&entry)? != CATALOGUE {
        return Err(BundleError::Invalid(format!(
            "{CATALOGUE} does not follow {MANIFEST}"
        )));
    }
    let mut db = tokio::fs::File::create(db_path)
        .await
        .map_err(BundleError::Write)?;
    tokio::io::copy(&mut entry, &mut db)
        .await
        .map_err(BundleError::Read)?;
    tokio::io::AsyncWriteExt::flush(&mut db)
        .await
        .map_err(BundleError::Write)?;
    drop(db);
    let got = hashed_file(db_path).await?;
    if got.sha256 != manifest.catalogue.sha256 {
        return Err(BundleError::Invalid(format!(
            "{CATALOGUE} has sha256 {}, the manifest says {}",
            got.sha256, manifest.catalogue.sha256
        )));
    }
    let path = db_path.to_owned();
    let bundle = Arc::new(blocking(move || BundleCatalogue::open(&path)).await?);

    let listed: BTreeMap<&str, u64> = manifest
        .blobs
        .iter()
        .map(|m| (m.sha256.as_str(), m.size))
        .collect();
    let mut seen = HashSet::new();
    let mut moved = Moved::default();
    while let Some(entry) = next(&mut entries).await? {
        let name = entry_name(&entry)?;
        let sha256 = name
            .strip_prefix(BLOBS)
            .ok_or_else(|| BundleError::Invalid(format!("an unexpected member {name:?}")))?
            .to_owned();
        let size = *listed
            .get(sha256.as_str())
            .ok_or_else(|| BundleError::Invalid(format!("blob {sha256} is not in the manifest")))?;
        if !seen.insert(sha256.clone()) {
            return Err(BundleError::Invalid(format!("blob {sha256} comes twice")));
        }
        let existed = stores
            .blobs
            .head(&sha256)
            .await
            .map_err(|e| BundleError::Unstored {
                sha256: sha256.clone(),
                reason: e.to_string(),
            })?
            .is_some();
        let body =
            ReaderStream::new(entry).map_err(|e| IngestError::Upstream(format!("reading the bundle: {e}")));
        let mut staged = ingest
            .stage(Some(&sha256), SizeLimit::Exact(size))
            .await
            .map_err(|e| BundleError::Unstored {
                sha256: sha256.clone(),
                reason: e.to_string(),
            })?;
        let received = staged.receive_chunks(body, |_| {}).await;
        let kept = match received {
            Ok(()) => staged.commit().await,
            Err(e) => {
                staged.abort().await;
                Err(e)
            }
        };
        match kept {
            Ok(Kept::Stored { .. }) => {}
            Ok(Kept::Unstored { .. }) => {
                return Err(BundleError::Unstored {
                    sha256,
                    reason: "the store refused verified bytes".into(),
                });
            }
            Err(IngestError::Storage(e)) => {
                return Err(BundleError::Unstored {
                    sha256,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                let (bundle, key) = (bundle.clone(), sha256.clone());
                let names = blocking(move || bundle.names_of_blob(&key)).await?;
                let names = if names.is_empty() {
                    "no file names it".to_owned()
                } else {
                    names.join(", ")
                };
                return Err(BundleError::CorruptBlob {
                    sha256,
                    names,
                    reason: e.to_string(),
                });
            }
        }
        if !existed {
            stored_here.push(sha256);
        }
        moved.blobs += 1;
        moved.bytes += size;
    }
    if let Some(missing) = listed.keys().find(|sha| !seen.contains(**sha)) {
        return Err(BundleError::Invalid(format!(
            "blob {missing} is in the manifest but not in the bundle (cut short?)"
        )));
    }

    let (catalogue, pages, path) = (stores.catalogue.clone(), stores.pages.clone(), db_path.to_owned());
    let (projects, page_entries) = blocking(move || {
        let projects = catalogue.import_rows(&path)?;
        let entries = bundle.page_entries(PAGE_BATCH, |batch| pages.import_entries(&batch))?;
        Ok((projects, entries))
    })
    .await?;
    moved.projects = projects;
    moved.page_entries = page_entries;
    Ok(moved)
}

async fn next<R: AsyncRead + Unpin + Send>(
    entries: &mut tokio_tar::Entries<R>,
) -> Result<Option<tokio_tar::Entry<Archive<R>>>, BundleError> {
    entries.next().await.transpose().map_err(BundleError::Read)
}

fn entry_name<R: AsyncRead + Unpin>(entry: &tokio_tar::Entry<R>) -> Result<String, BundleError> {
    let path = entry.path().map_err(BundleError::Read)?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| BundleError::Invalid("a member name is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_belong_to_their_projects() {
        assert_eq!(page_project("pypi", "numpy").as_deref(), Some("numpy"));
        assert_eq!(page_project("pypi", "@internal/numpy").as_deref(), Some("numpy"));
        assert_eq!(page_project("hex", "/packages/jason").as_deref(), Some("jason"));
        assert_eq!(page_project("hex", "/names"), None);
        assert_eq!(page_project("hex", "/docs/jason-1.4.4.tar.gz"), None);
        assert_eq!(page_project("nonsense", "numpy"), None);
    }
}
