//! Hosted hex repositories (`[[hex.hosted]]`): the team's packages at `/hex/repos/{name}`,
//! published through the hex API.
//!
//! A package's record (`hosted/hex/{repository}/{name}` in the record store, a
//! [`HostedHexPackage`]) is the truth every node on the bucket shares; release tarballs are blobs,
//! pinned so the LRU never evicts them. A publish is staged and checked as a whole (format, inner
//! and outer checksums, metadata, name rules); a version already published is immutable. The
//! record is written by compare-and-swap after the blob is committed, as for hosted PyPI files.
//!
//! The registry files are made by the mirror and signed with the repository's key: a hosted name
//! lists only its hosted releases; with `fallback`, every other name is the upstream's verified
//! file (the release policy applied) under this repository's name, and `/names` and `/versions`
//! merge both.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::downloads::{Downloads, FileAnswer};
use super::hex::{HexMirror, signed_page};
use super::hosted::{HostedError, receive_upload};
use super::ingest::{Ingest, Kept, Staged};
use super::pages::Served;
use super::{CacheError, CacheOutcome, blocking, unix_now};
use crate::hex::hosted::{
    HostedHexPackage, HostedHexRelease, HostedRetirement, Published, repository_payload,
};
use crate::hex::publish::check_publication;
use crate::hex::{HexSigningKey, RegistryFile};
use crate::storage::Catalogue;
use crate::storage::blob::RangeRequest;
use crate::storage::pages::PageHeader;
use crate::storage::records::{Expect, RecordKey, RecordStore};

/// The largest release tarball taken (what mix refuses to build past).
pub const MAX_TARBALL_BYTES: u64 = 16 * 1024 * 1024;
/// How long what the record store said of a package, and a repository's list of packages (for
/// `/names` and `/versions`), are reused: a record store on S3 is not asked on every request
/// (most names a fallback repository serves are not hosted), and a release published through
/// another node on the bucket shows here within this. Changes made on this node show at once.
const RECORDS_TTL: Duration = Duration::from_secs(10);
/// How long a signed registry file is reused for the same inputs.
const SIGNED_TTL: Duration = Duration::from_secs(60);
/// How long a hosted name's registry file is fresh for clients' revalidation.
const HOSTED_FILE_TTL: Duration = Duration::from_secs(60);

/// One hosted repository at run time.
pub struct HexRepository {
    pub name: String,
    key: HexSigningKey,
    pub fallback: bool,
}

impl HexRepository {
    pub fn new(name: String, key: HexSigningKey, fallback: bool) -> Self {
        Self { name, key, fallback }
    }

    /// The public key clients pin (PEM).
    pub fn public_key(&self) -> &str {
        self.key.public_pem()
    }
}

/// What [`HostedHex::publish`] did.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub published: Published,
    pub name: String,
    pub release: HostedHexRelease,
}

/// The hosted hex repositories of this mirror.
pub struct HostedHex {
    repositories: Vec<HexRepository>,
    records: Arc<dyn RecordStore>,
    ingest: Ingest,
    downloads: Arc<Downloads>,
    catalogue: Catalogue,
    /// Each repository's hosted packages, for `/names` and `/versions` and the UI.
    packages: Cache<String, Arc<Vec<HostedHexPackage>>>,
    /// What the record store said of (repository, package): the record, or that there is none.
    records_read: Cache<(String, String), Option<Arc<HostedHexPackage>>>,
    /// Signed registry files by (repository, path, what they were made of).
    signed: Cache<(String, String, String), Arc<crate::storage::pages::StoredPage>>,
}

impl HostedHex {
    pub fn new(
        repositories: Vec<HexRepository>,
        records: Arc<dyn RecordStore>,
        downloads: Arc<Downloads>,
        catalogue: Catalogue,
    ) -> Self {
        Self {
            repositories,
            records,
            ingest: downloads.ingest().clone(),
            downloads,
            catalogue,
            packages: Cache::builder()
                .max_capacity(64)
                .time_to_live(RECORDS_TTL)
                .build(),
            records_read: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(RECORDS_TTL)
                .build(),
            signed: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(SIGNED_TTL)
                .build(),
        }
    }

    pub fn repository(&self, name: &str) -> Option<&HexRepository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    pub fn repositories(&self) -> &[HexRepository] {
        &self.repositories
    }

    fn known(&self, name: &str) -> Result<&HexRepository, HostedError> {
        self.repository(name)
            .ok_or_else(|| HostedError::NotFound(format!("no hosted hex repository is named {name:?}")))
    }

    /// Receives a published tarball into a staged blob.
    pub async fn receive(
        &self,
        body: impl futures::Stream<Item = Result<bytes::Bytes, super::ingest::IngestError>>,
    ) -> Result<Staged, HostedError> {
        receive_upload(&self.ingest, MAX_TARBALL_BYTES, body).await
    }

    /// Checks a received tarball and, unless the same release is there already, keeps it and
    /// adds it to its package's record.
    pub async fn publish(
        &self,
        repository: &str,
        staged: Staged,
        publisher: &str,
    ) -> Result<PublishOutcome, HostedError> {
        let checked = match self.known(repository) {
            Ok(_) => check_staged(&staged).await,
            Err(e) => Err(e),
        };
        let (publication, size) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                staged.abort().await;
                return Err(e);
            }
        };
        let key = package_key(repository, &publication.name)?;
        // A quick look first, so a republish of the same bytes (or a conflict) stores nothing.
        if let Some(stored) = self.records.get(&key).await? {
            let mut record = parse(&stored.body)?;
            let outcome = record.publish(&publication, size, publisher, unix_now());
            if !matches!(outcome, Ok(Published::Added)) {
                staged.abort().await;
                return outcome_of(&record, &publication.version, outcome);
            }
        }
        match staged.commit().await {
            Ok(Kept::Stored { .. }) => {}
            Ok(Kept::Unstored { .. }) => {
                return Err(HostedError::Storage(
                    "the blob store cannot keep files now".into(),
                ));
            }
            Err(e) => return Err(HostedError::Storage(e.to_string())),
        }
        let (record, outcome) = loop {
            let stored = self.records.get(&key).await?;
            let (mut record, expect) = match &stored {
                Some(stored) => (parse(&stored.body)?, Expect::Version(stored.version.clone())),
                None => (HostedHexPackage::new(&publication.name), Expect::Absent),
            };
            let outcome = record.publish(&publication, size, publisher, unix_now());
            if !matches!(outcome, Ok(Published::Added)) {
                // A racing publish of the same version won.
                break (record, outcome);
            }
            let body = serde_json::to_vec(&record).map_err(|e| HostedError::Storage(e.to_string()))?;
            if self.records.put(&key, &body, expect).await? {
                break (record, outcome);
            }
        };
        let result = outcome_of(&record, &publication.version, outcome)?;
        let catalogue = self.catalogue.clone();
        let sha256 = result.release.outer_checksum.clone();
        if let Err(e) = blocking(move || catalogue.pin_blob(&sha256, true)).await {
            tracing::warn!(package = %result.name, error = %e, "could not pin a hosted release's blob");
        }
        self.changed(repository, &result.name).await;
        tracing::info!(repository, package = %result.name, version = %result.release.version, publisher, "hex release published");
        Ok(result)
    }

    /// Retires a release (`Some`) or takes its retirement back (`None`); returns the release as
    /// it is now.
    pub async fn retire(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        retirement: Option<HostedRetirement>,
    ) -> Result<HostedHexRelease, HostedError> {
        self.known(repository)?;
        let key = package_key(repository, name)?;
        let missing = || {
            HostedError::NotFound(format!(
                "the hosted repository {repository:?} has no package {name:?}"
            ))
        };
        loop {
            let stored = self.records.get(&key).await?.ok_or_else(missing)?;
            let mut record = parse(&stored.body)?;
            record
                .retire(version, retirement.clone())
                .map_err(HostedError::Invalid)?;
            let body = serde_json::to_vec(&record).map_err(|e| HostedError::Storage(e.to_string()))?;
            if self
                .records
                .put(&key, &body, Expect::Version(stored.version))
                .await?
            {
                self.changed(repository, name).await;
                return record.release(version).cloned().ok_or_else(missing);
            }
        }
    }

    /// The hosted package `name` of `repository`, if it is hosted there (as read within
    /// [`RECORDS_TTL`]).
    pub async fn package(
        &self,
        repository: &str,
        name: &str,
    ) -> Result<Option<Arc<HostedHexPackage>>, HostedError> {
        let key = (repository.to_owned(), name.to_owned());
        if let Some(read) = self.records_read.get(&key).await {
            return Ok(read);
        }
        let read = match self.records.get(&package_key(repository, name)?).await? {
            Some(stored) => Some(Arc::new(parse(&stored.body)?)),
            None => None,
        };
        self.records_read.insert(key, read.clone()).await;
        Ok(read)
    }

    /// Forgets what was read of `repository` after a change made here.
    async fn changed(&self, repository: &str, name: &str) {
        self.packages.invalidate(repository).await;
        self.records_read
            .invalidate(&(repository.to_owned(), name.to_owned()))
            .await;
    }

    /// Every package hosted in `repository`, by name (reused for [`RECORDS_TTL`]).
    pub async fn packages(&self, repository: &str) -> Result<Arc<Vec<HostedHexPackage>>, HostedError> {
        if let Some(packages) = self.packages.get(repository).await {
            return Ok(packages);
        }
        let under = RecordKey::new(&["hosted", "hex", repository])?;
        let mut packages = Vec::new();
        for key in self.records.list(&under).await? {
            if let Some(stored) = self.records.get(&key).await? {
                packages.push(parse(&stored.body)?);
            }
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        let packages = Arc::new(packages);
        self.packages
            .insert(repository.to_owned(), Arc::clone(&packages))
            .await;
        Ok(packages)
    }

    /// A registry file of `repository`, made and signed by the mirror. `mirror` is the hex
    /// mirror a fallback repository takes other names from.
    pub async fn registry(
        &self,
        repository: &str,
        file: RegistryFile,
        mirror: Option<&HexMirror>,
    ) -> Result<Served, CacheError> {
        let repo = self
            .repository(repository)
            .ok_or_else(|| unknown_repository(repository))?;
        let hosted: Arc<Vec<HostedHexPackage>> = match &file {
            RegistryFile::Package(name) => Arc::new(
                self.package(repository, name)
                    .await
                    .map_err(storage)?
                    .map(|package| (*package).clone())
                    .into_iter()
                    .collect(),
            ),
            _ => self.packages(repository).await.map_err(storage)?,
        };
        let hosted_name = matches!(&file, RegistryFile::Package(_)) && !hosted.is_empty();
        // The upstream's file, unless the name is hosted (then the upstream is never asked).
        let upstream = match (mirror.filter(|_| repo.fallback && !hosted_name), &file) {
            (Some(mirror), _) => Some((mirror, mirror.upstream_registry(&file).await?)),
            (None, RegistryFile::Package(name)) if !hosted_name => {
                return Err(CacheError::NotFound(format!(
                    "the hosted hex repository {repository:?} has no package {name:?}"
                )));
            }
            // `/names` and `/versions` of a repository without fallback list what it hosts,
            // nothing at first.
            (None, _) => None,
        };
        let fingerprint = format!(
            "{}|{}",
            hosted_fingerprint(&hosted),
            upstream
                .as_ref()
                .map_or_else(String::new, |(mirror, served)| format!(
                    "{}@{}",
                    served.page.header.etag,
                    mirror.policy_generation()
                ))
        );
        let outcome = upstream
            .as_ref()
            .map_or(CacheOutcome::Hit, |(_, served)| served.outcome);
        let cache_key = (repository.to_owned(), file.path(), fingerprint);
        if let Some(page) = self.signed.get(&cache_key).await {
            return Ok(Served { page, outcome });
        }
        let (payload, alias) = match &upstream {
            Some((mirror, served)) => (
                Some(mirror.policy_payload(&file, served).await?),
                Some(mirror.upstream_repository().to_owned()),
            ),
            None => (None, None),
        };
        let made = repository_payload(repository, &file, &hosted, payload.as_deref(), alias.as_deref())
            .map_err(CacheError::UpstreamData)?;
        let now = unix_now();
        let header = match &upstream {
            Some((_, served)) => served.page.header.clone(),
            None => PageHeader {
                etag: String::new(),
                fetched_at: now,
                expires_at: now + HOSTED_FILE_TTL.as_secs(),
                sources: format!("hosted:hex:{repository}"),
                upstream_etag: None,
            },
        };
        let page = signed_page(made, &repo.key, &header).await?;
        self.signed.insert(cache_key, Arc::clone(&page)).await;
        Ok(Served { page, outcome })
    }

    /// A release tarball of `repository`: a hosted release's from the blob store, any other
    /// name's through the mirror's verified download path (with `fallback`).
    pub async fn tarball(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        mirror: Option<&HexMirror>,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        let repo = self
            .repository(repository)
            .ok_or_else(|| unknown_repository(repository))?;
        let Some(package) = self.package(repository, name).await.map_err(storage)? else {
            return match mirror.filter(|_| repo.fallback) {
                Some(mirror) => mirror.tarball(name, version, complete_first, range).await,
                None => Err(CacheError::NotFound(format!(
                    "the hosted hex repository {repository:?} has no package {name:?}"
                ))),
            };
        };
        let release = package.release(version).ok_or_else(|| {
            CacheError::NotFound(format!(
                "the hosted package {name:?} has no release {version:?} (a hosted name never comes from upstream)"
            ))
        })?;
        let sha256 = release.outer_checksum.clone();
        let body = self.downloads.stored_blob(&sha256).await?.ok_or_else(|| {
            CacheError::StorageUnavailable(format!(
                "the tarball of {name} {version} (sha256 {sha256}) is not in the blob store (see /health)"
            ))
        })?;
        Ok(FileAnswer::Stored {
            body,
            sha256,
            outcome: CacheOutcome::Hit,
        })
    }
}

/// Reads the staged tarball (bounded by [`MAX_TARBALL_BYTES`]) and checks it.
async fn check_staged(staged: &Staged) -> Result<(crate::hex::publish::Publication, u64), HostedError> {
    let path = staged.spool_path().to_path_buf();
    let tar = tokio::fs::read(&path)
        .await
        .map_err(|e| HostedError::Storage(format!("reading the staged tarball: {e}")))?;
    let size = tar.len() as u64;
    let publication = tokio::task::spawn_blocking(move || check_publication(&tar))
        .await
        .map_err(|e| HostedError::Storage(e.to_string()))?
        .map_err(|e| HostedError::Invalid(format!("the release tarball is refused: {e}")))?;
    // The outer checksum is the bytes' own sha256, as the ingest hashed them on the way in.
    if staged.verified().as_deref() != Some(::hex::encode(publication.outer_checksum).as_str()) {
        return Err(HostedError::Storage(
            "the staged tarball changed while it was checked".into(),
        ));
    }
    Ok((publication, size))
}

/// The result of adding `version` to `record`: what was published, or why not.
fn outcome_of(
    record: &HostedHexPackage,
    version: &str,
    outcome: Result<Published, String>,
) -> Result<PublishOutcome, HostedError> {
    let published = outcome.map_err(HostedError::Conflict)?;
    let release = record.release(version).cloned().ok_or_else(|| {
        HostedError::Storage(format!("{} {version} is missing from its record", record.name))
    })?;
    Ok(PublishOutcome {
        published,
        name: record.name.clone(),
        release,
    })
}

/// What a signed file of hosted packages depends on: each release and its retirement.
fn hosted_fingerprint(packages: &[HostedHexPackage]) -> String {
    use sha2::Digest as _;
    let mut digest = sha2::Sha256::new();
    for package in packages {
        digest.update(package.name.as_bytes());
        for release in &package.releases {
            digest.update(release.outer_checksum.as_bytes());
            if let Some(retired) = &release.retired {
                digest.update(retired.reason.as_bytes());
                digest.update(retired.message.as_bytes());
            }
            digest.update(b"\n");
        }
    }
    ::hex::encode(&digest.finalize()[..16])
}

/// Where a package's record is; a name that is no hex package name is the caller's mistake.
fn package_key(repository: &str, name: &str) -> Result<RecordKey, HostedError> {
    crate::hex::validate_package_name(name)
        .map_err(|e| HostedError::Invalid(format!("{name:?} is not a hex package name: {e}")))?;
    Ok(RecordKey::new(&["hosted", "hex", repository, name])?)
}

fn parse(body: &[u8]) -> Result<HostedHexPackage, HostedError> {
    serde_json::from_slice(body)
        .map_err(|e| HostedError::Storage(format!("a hosted hex package's record: {e}")))
}

fn storage(e: HostedError) -> CacheError {
    CacheError::Storage(e.to_string())
}

fn unknown_repository(name: &str) -> CacheError {
    CacheError::NotFound(format!("no hosted hex repository is named {name:?}"))
}
