//! Hosted indexes: uploads become blobs and a line in the project's record.
//!
//! A project's record (`hosted/pypi/{index}/{project}` in the record store, a
//! [`HostedProject`]) is the truth every node shares; the files' bytes are blobs in the configured
//! store, pinned so this node's LRU never evicts them. An upload is staged and hashed first; a file
//! name already in the record is then either the same bytes (nothing changes: `--skip-existing`
//! works) or a conflict. New bytes are committed, then the record is written by compare-and-swap
//! (a racing upload of the same name makes the loser look again), then the blob is pinned.

use std::io::Read as _;
use std::sync::Arc;

use md5::Digest as _;

use super::blocking;
use super::ingest::{Ingest, IngestError, Kept, SizeLimit, Staged};
use crate::pypi::hosted::{HostedFile, HostedProject, check_upload, requires_python};
use crate::pypi::wheel::extract_metadata;
use crate::storage::Catalogue;
use crate::storage::blob::BlobError;
use crate::storage::records::{Expect, RecordKey, RecordStore};

/// Why an upload (or a change to a hosted file) was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    #[error("no hosted index is named {0:?}")]
    UnknownIndex(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong: a missing field, a bad name, a digest that does not match.
    #[error("{0}")]
    Invalid(String),
    /// The file name exists with other bytes: files are immutable.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Storage(String),
}

impl From<BlobError> for HostedError {
    fn from(e: BlobError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// One upload's form fields, as the legacy upload API names them.
#[derive(Debug, Clone, Default)]
pub struct UploadForm {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256_digest: Option<String>,
    pub md5_digest: Option<String>,
    pub requires_python: Option<String>,
}

/// What an accepted upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    Stored,
    /// The same file with the same bytes was there already.
    AlreadyThere,
}

/// A hosted index at run time: its name and its id in the catalogue (whose file rows say which
/// index a file came from).
#[derive(Debug, Clone)]
pub struct HostedIndex {
    pub name: String,
    pub id: i64,
}

/// How the catalogue names a hosted index (`hosted:{name}`) and its files' places
/// (`hosted:{name}/{file}`): names, not places anything fetches from (hosted files are stored
/// blobs), and like no upstream URL.
const HOSTED_SCHEME: &str = "hosted:";

/// Whether a catalogue row's URL is a hosted file's.
pub fn is_hosted_url(url: &str) -> bool {
    url.starts_with(HOSTED_SCHEME)
}

impl HostedIndex {
    /// The catalogue's name of the index `name`; also the key its pages' snapshots are kept
    /// under (no upstream's key looks like this).
    pub fn catalogue_url(name: &str) -> String {
        format!("{HOSTED_SCHEME}{name}")
    }

    /// Where the catalogue says this index's files are.
    pub fn url_prefix(&self) -> String {
        format!("{}/", Self::catalogue_url(&self.name))
    }

    pub fn snapshot_key(&self) -> String {
        Self::catalogue_url(&self.name)
    }
}

/// The hosted PyPI indexes of this mirror.
pub struct HostedPypi {
    indexes: Vec<HostedIndex>,
    records: Arc<dyn RecordStore>,
    ingest: Ingest,
    catalogue: Catalogue,
    max_upload: u64,
}

impl HostedPypi {
    pub fn new(
        indexes: Vec<HostedIndex>,
        records: Arc<dyn RecordStore>,
        ingest: Ingest,
        catalogue: Catalogue,
        max_upload: u64,
    ) -> Self {
        Self {
            indexes,
            records,
            ingest,
            catalogue,
            max_upload,
        }
    }

    pub fn has_index(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    pub fn index(&self, name: &str) -> Option<&HostedIndex> {
        self.indexes.iter().find(|index| index.name == name)
    }

    /// Every hosted index, or only the one named.
    fn asked<'a>(&'a self, only: Option<&'a str>) -> impl Iterator<Item = &'a HostedIndex> + 'a {
        self.indexes
            .iter()
            .filter(move |index| only.is_none_or(|name| index.name == name))
    }

    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The names, for telling one configured set from another.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.indexes.iter().map(|index| index.name.as_str())
    }

    /// The (normalized) names of every hosted project (of every index, or only the one named),
    /// sorted, each once.
    pub async fn project_names(&self, only: Option<&str>) -> Result<Vec<String>, HostedError> {
        let mut names = std::collections::BTreeSet::new();
        for index in self.asked(only) {
            let under = RecordKey::new(&["hosted", "pypi", &index.name])?;
            for key in self.records.list(&under).await? {
                if let Some(name) = key.as_str().rsplit('/').next() {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Every hosted index's record of `project` (or only the named index's), in configuration
    /// order. An error (the record store unreachable) is never "not hosted": the caller must not
    /// fall back to upstreams.
    pub async fn find(
        &self,
        only: Option<&str>,
        project: &str,
    ) -> Result<Vec<(HostedIndex, HostedProject)>, HostedError> {
        let mut found = Vec::new();
        for index in self.asked(only) {
            if let Some(record) = self.project(&index.name, project).await? {
                found.push((index.clone(), record));
            }
        }
        Ok(found)
    }

    /// Receives an upload's file into a staged blob (not yet kept anywhere).
    pub async fn receive(
        &self,
        body: impl futures::Stream<Item = Result<bytes::Bytes, IngestError>>,
    ) -> Result<Staged, HostedError> {
        receive_upload(&self.ingest, self.max_upload, body).await
    }

    /// Checks a received upload and, unless it is already there, keeps it and records it.
    pub async fn accept(
        &self,
        index: &str,
        form: UploadForm,
        staged: Staged,
        uploader: &str,
    ) -> Result<Uploaded, HostedError> {
        match self
            .check_upload_against_record(index, form, &staged, uploader)
            .await
        {
            Ok(Some(file)) => self.keep(index, staged, file).await,
            Ok(None) => {
                staged.abort().await;
                Ok(Uploaded::AlreadyThere)
            }
            Err(e) => {
                staged.abort().await;
                Err(e)
            }
        }
    }

    /// The file's record line, or `None` when the same bytes are there already.
    async fn check_upload_against_record(
        &self,
        index: &str,
        form: UploadForm,
        staged: &Staged,
        uploader: &str,
    ) -> Result<Option<Accepted>, HostedError> {
        if !self.has_index(index) {
            return Err(HostedError::UnknownIndex(index.to_owned()));
        }
        let project =
            check_upload(&form.name, &form.version, &form.filename).map_err(HostedError::Invalid)?;
        let sha256 = staged
            .verified()
            .ok_or_else(|| HostedError::Storage("the staged upload has no hash".into()))?;
        if let Some(sent) = &form.sha256_digest
            && !sent.eq_ignore_ascii_case(&sha256)
        {
            return Err(HostedError::Invalid(format!(
                "sha256_digest is {sent} but the file's sha256 is {sha256}"
            )));
        }
        let spool = staged.spool_path().to_path_buf();
        let filename = form.filename.clone();
        let wants_md5 = form.md5_digest.is_some();
        let (md5, metadata) = tokio::task::spawn_blocking(move || read_spool(&spool, &filename, wants_md5))
            .await
            .map_err(|e| HostedError::Storage(e.to_string()))?
            .map_err(|e| HostedError::Storage(format!("reading the staged upload: {e}")))?;
        if let (Some(sent), Some(md5)) = (&form.md5_digest, md5)
            && !sent.eq_ignore_ascii_case(&md5)
        {
            return Err(HostedError::Invalid(format!(
                "md5_digest is {sent} but the file's md5 is {md5}"
            )));
        }
        if let Some(existing) = self
            .project(index, &project)
            .await?
            .and_then(|p| p.file(&form.filename).cloned())
        {
            return same_or_conflict(&existing, &sha256).map(|()| None);
        }
        // As the public index does: a wheel must carry readable core metadata.
        let metadata = metadata
            .transpose()
            .map_err(|why| HostedError::Invalid(format!("{} is not a valid wheel: {why}", form.filename)))?;
        let metadata_sha256 = match &metadata {
            Some(bytes) => match self.ingest.bytes(bytes).await {
                Ok(Kept::Stored { sha256, .. }) => Some(sha256),
                Ok(Kept::Unstored { .. }) => {
                    return Err(HostedError::Storage(
                        "the blob store cannot keep files now".into(),
                    ));
                }
                Err(e) => return Err(HostedError::Storage(e.to_string())),
            },
            None => None,
        };
        let requires_python = form
            .requires_python
            .filter(|r| !r.trim().is_empty())
            .or_else(|| metadata.as_deref().and_then(requires_python));
        let file = HostedFile {
            filename: form.filename,
            version: form.version,
            sha256,
            size: 0,
            requires_python,
            // PEP 700's form: microseconds, UTC.
            upload_time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            metadata_sha256,
            uploader: uploader.to_owned(),
            yanked: None,
        };
        Ok(Some(Accepted {
            project,
            display: form.name,
            file,
        }))
    }

    /// Commits the blob, adds the file to the project's record, pins the blob.
    async fn keep(&self, index: &str, staged: Staged, accepted: Accepted) -> Result<Uploaded, HostedError> {
        let Accepted {
            project,
            display,
            mut file,
        } = accepted;
        match staged.commit().await {
            Ok(Kept::Stored { size, .. }) => file.size = size,
            Ok(Kept::Unstored { .. }) => {
                return Err(HostedError::Storage(
                    "the blob store cannot keep files now".into(),
                ));
            }
            Err(e) => return Err(HostedError::Storage(e.to_string())),
        }
        let key = project_key(index, &project)?;
        loop {
            let stored = self.records.get(&key).await?;
            let (mut record, expect) = match &stored {
                Some(stored) => (parse(&stored.body)?, Expect::Version(stored.version.clone())),
                None => (
                    HostedProject {
                        name: display.clone(),
                        files: Vec::new(),
                    },
                    Expect::Absent,
                ),
            };
            if let Some(existing) = record.file(&file.filename) {
                // A racing upload of the same name won: the same bytes are fine.
                return same_or_conflict(existing, &file.sha256).map(|()| Uploaded::AlreadyThere);
            }
            record.files.push(file.clone());
            let body = serde_json::to_vec(&record).map_err(|e| HostedError::Storage(e.to_string()))?;
            if self.records.put(&key, &body, expect).await? {
                break;
            }
        }
        let catalogue = self.catalogue.clone();
        let pinned = [Some(file.sha256.clone()), file.metadata_sha256.clone()];
        let pin = blocking(move || {
            for sha256 in pinned.iter().flatten() {
                catalogue.pin_blob(sha256, true)?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = pin {
            tracing::warn!(file = %file.filename, error = %e, "could not pin a hosted file's blob");
        }
        tracing::info!(index, project, file = %file.filename, uploader = %file.uploader, "hosted file uploaded");
        Ok(Uploaded::Stored)
    }

    /// A hosted project's record, if the index has the project.
    /// Yanks, unyanks or deletes a file (see [`change_file`]).
    pub async fn change(
        &self,
        index: &str,
        project: &str,
        filename: &str,
        change: &FileChange,
    ) -> Result<HostedFile, HostedError> {
        if !self.has_index(index) {
            return Err(HostedError::UnknownIndex(index.to_owned()));
        }
        change_file(
            self.records.as_ref(),
            &self.catalogue,
            index,
            project,
            filename,
            change,
        )
        .await
    }

    pub async fn project(&self, index: &str, project: &str) -> Result<Option<HostedProject>, HostedError> {
        match self.records.get(&project_key(index, project)?).await? {
            Some(stored) => parse(&stored.body).map(Some),
            None => Ok(None),
        }
    }
}

/// Receives an uploaded file of at most `max` bytes into a staged blob (not yet kept anywhere).
pub async fn receive_upload(
    ingest: &Ingest,
    max: u64,
    body: impl futures::Stream<Item = Result<bytes::Bytes, IngestError>>,
) -> Result<Staged, HostedError> {
    let mut staged = ingest.stage(None, SizeLimit::AtMost(max)).await?;
    if let Err(e) = staged.receive_chunks(body, |_| {}).await {
        staged.abort().await;
        // The store failing (a full disk, S3 down) is ours to say, not the uploader's fault.
        return Err(match e {
            IngestError::Storage(e) => HostedError::Storage(format!("the upload could not be kept: {e}")),
            e => HostedError::Invalid(format!("the uploaded file did not arrive whole: {e}")),
        });
    }
    Ok(staged)
}

/// An upload that passed its checks: where it goes and its record line.
struct Accepted {
    project: String,
    /// The project's name as the upload spells it.
    display: String,
    file: HostedFile,
}

/// What an admin does to a hosted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// PEP 592: installers skip it unless pinned to its version exactly. The reason may be empty.
    Yank(String),
    Unyank,
    /// Gone from the index; the blob is no longer pinned.
    Delete,
}

/// Applies `change` to one file of a hosted project's record (compare-and-swap, so a racing
/// upload is kept); returns the file as it was. A deleted file's blobs are unpinned in
/// `catalogue`, this node's (other nodes on the bucket keep theirs pinned).
pub async fn change_file(
    records: &dyn RecordStore,
    catalogue: &Catalogue,
    index: &str,
    project: &str,
    filename: &str,
    change: &FileChange,
) -> Result<HostedFile, HostedError> {
    let key = project_key(index, project)?;
    let missing = || {
        HostedError::NotFound(format!(
            "the hosted index {index:?} has no file {filename:?} of {project:?}"
        ))
    };
    loop {
        let stored = records.get(&key).await?.ok_or_else(missing)?;
        let mut record = parse(&stored.body)?;
        let at = record
            .files
            .iter()
            .position(|f| f.filename == filename)
            .ok_or_else(missing)?;
        let before = record.files[at].clone();
        match change {
            FileChange::Yank(reason) => record.files[at].yanked = Some(reason.clone()),
            FileChange::Unyank => record.files[at].yanked = None,
            FileChange::Delete => {
                record.files.remove(at);
            }
        }
        let body = serde_json::to_vec(&record).map_err(|e| HostedError::Storage(e.to_string()))?;
        if records.put(&key, &body, Expect::Version(stored.version)).await? {
            if *change == FileChange::Delete {
                let catalogue = catalogue.clone();
                let blobs = [Some(before.sha256.clone()), before.metadata_sha256.clone()];
                let unpinned = tokio::task::spawn_blocking(move || {
                    blobs
                        .iter()
                        .flatten()
                        .try_for_each(|sha256| catalogue.pin_blob(sha256, false))
                })
                .await;
                if !matches!(unpinned, Ok(Ok(()))) {
                    tracing::warn!(file = %filename, "the deleted file's blob stays pinned on this node");
                }
            }
            return Ok(before);
        }
    }
}

fn project_key(index: &str, project: &str) -> Result<RecordKey, HostedError> {
    Ok(RecordKey::new(&["hosted", "pypi", index, project])?)
}

fn parse(body: &[u8]) -> Result<HostedProject, HostedError> {
    serde_json::from_slice(body).map_err(|e| HostedError::Storage(format!("a hosted project's record: {e}")))
}

fn same_or_conflict(existing: &HostedFile, sha256: &str) -> Result<(), HostedError> {
    if existing.sha256 == sha256 {
        Ok(())
    } else {
        Err(HostedError::Conflict(format!(
            "{} exists with other bytes (sha256 {}): files are immutable; upload a new version",
            existing.filename, existing.sha256
        )))
    }
}

/// The staged file's md5 (when asked for) and, for a wheel, its core metadata (or why there is
/// none).
type SpoolFacts = (Option<String>, Option<Result<Vec<u8>, String>>);

fn read_spool(path: &std::path::Path, filename: &str, md5: bool) -> std::io::Result<SpoolFacts> {
    let md5 = if md5 {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = md5::Md5::new();
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Some(hex::encode(hasher.finalize()))
    } else {
        None
    };
    let metadata = if filename.to_ascii_lowercase().ends_with(".whl") {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        Some(extract_metadata(file, filename).map_err(|e| e.to_string()))
    } else {
        None
    };
    Ok((md5, metadata))
}
