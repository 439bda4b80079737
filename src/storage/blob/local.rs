//! Blobs on local disk: `root/sha256/ab/cd/<sha256>`, spooled through `root/tmp/` (same
//! filesystem, so commit is an atomic rename) and set aside in `root/quarantine/`.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::staging::{StagedFile, unique_name};
use super::{BlobBody, BlobEntry, BlobError, BlobStore, BlobWriter, ByteRange, validate_key};

const BLOBS_DIR: &str = "sha256";
pub(super) const TMP_DIR: &str = "tmp";
const QUARANTINE_DIR: &str = "quarantine";
const HEALTH_PROBE: &[u8] = b"pkgmirror blob store health probe\n";

pub struct LocalBlobStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
}

impl LocalBlobStore {
    /// Creates the directory layout under `root` and removes temp files left by an earlier run.
    ///
    /// Synchronous: it runs once at start-up. Every file in `root/tmp/` is removed, so no other
    /// process may be writing blobs under the same `root` at the time.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        // Absolute, so the paths in `BlobBody::File` stay valid whatever the working directory.
        let root = std::path::absolute(root).map_err(|e| BlobError::io("resolving", root, e))?;
        let store = Self {
            blobs: root.join(BLOBS_DIR),
            tmp: root.join(TMP_DIR),
            quarantine: root.join(QUARANTINE_DIR),
            root,
        };
        for dir in [&store.blobs, &store.tmp, &store.quarantine] {
            std::fs::create_dir_all(dir).map_err(|e| BlobError::io("creating directory", dir, e))?;
        }
        remove_leftover_spools(&store.tmp)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where quarantined blobs go (for `cache verify` to say so).
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// Where the blob `sha256` lives (or would live); the key is validated first.
    pub fn blob_path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        validate_key(sha256)?;
        Ok(blob_dir(&self.blobs, sha256).join(sha256))
    }

    /// The blob's size, `None` if it is not stored.
    async fn stat(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        let path = self.blob_path(sha256)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(not_a_file(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::io("reading metadata of", &path, e)),
        }
    }
}

fn not_a_file(path: &Path) -> BlobError {
    BlobError::io(
        "reading",
        path,
        io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
    )
}

impl LocalBlobStore {
    /// A new staged file in this store's `tmp/`, on the blobs' filesystem.
    pub(super) async fn stage(&self) -> Result<StagedFile, BlobError> {
        StagedFile::create(&self.tmp, "part").await
    }

    /// Moves a sealed staged file (see [`StagedFile::seal`]) into place under `sha256`.
    pub(super) async fn adopt(&self, staged: &mut StagedFile, sha256: &str) -> Result<u64, BlobError> {
        validate_key(sha256)?;
        place(&self.blobs, staged, sha256).await
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn put(&self, _expected_sha256: Option<&str>) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(LocalBlobWriter {
            staged: self.stage().await?,
            blobs: self.blobs.clone(),
        }))
    }

    async fn get(&self, sha256: &str, _range: Option<ByteRange>) -> Result<Option<BlobBody>, BlobError> {
        // Opened on the calling thread, not the blocking pool: for a file read lately (the
        // common hit) open and fstat take microseconds, less than handing off to another thread.
        let path = self.blob_path(sha256)?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::io("opening", &path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| BlobError::io("reading metadata of", &path, e))?;
        if !meta.is_file() {
            return Err(not_a_file(&path));
        }
        Ok(Some(BlobBody::File {
            file,
            path,
            size: meta.len(),
        }))
    }

    async fn head(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        self.stat(sha256).await
    }

    async fn delete(&self, sha256: &str) -> Result<bool, BlobError> {
        let path = self.blob_path(sha256)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::io("removing", &path, e)),
        }
    }

    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        // One blocking task for the whole walk: tokio's read_dir would hop to the blocking pool
        // once per entry, and a cache holds many thousands.
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || list_blocking(&blobs))
            .await
            .map_err(|e| BlobError::io("listing", &self.blobs, io::Error::other(e)))?
    }

    async fn quarantine(&self, sha256: &str) -> Result<bool, BlobError> {
        let path = self.blob_path(sha256)?;
        let dest = self.quarantine.join(sha256);
        match tokio::fs::rename(&path, &dest).await {
            Ok(()) => {
                // Persist the removal, or a crash could bring the bad blob back into service.
                sync_dir(&blob_dir(&self.blobs, sha256)).await?;
                tracing::warn!(sha256, dest = %dest.display(), "blob quarantined");
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::io(&format!("moving {} to", path.display()), &dest, e)),
        }
    }

    fn layers(&self) -> Vec<&dyn BlobStore> {
        vec![self]
    }

    async fn health(&self) -> Result<(), BlobError> {
        let probe = self.tmp.join(unique_name("probe"));
        let checked = write_and_read_probe(&probe).await;
        let removed = tokio::fs::remove_file(&probe).await;
        checked?;
        removed.map_err(|e| BlobError::io("removing health probe", &probe, e))?;
        // Writable is not enough: serving needs the blob tree readable too.
        let listing = |e| BlobError::io("listing", &self.blobs, e);
        let mut entries = tokio::fs::read_dir(&self.blobs).await.map_err(listing)?;
        entries.next_entry().await.map_err(listing)?;
        Ok(())
    }
}

struct LocalBlobWriter {
    staged: StagedFile,
    blobs: PathBuf,
}

#[async_trait::async_trait]
impl BlobWriter for LocalBlobWriter {
    fn spool_path(&self) -> &Path {
        self.staged.path()
    }

    fn written(&self) -> u64 {
        self.staged.written()
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.staged.write(chunk).await
    }

    fn digest_so_far(&self) -> String {
        self.staged.digest()
    }

    async fn commit(mut self: Box<Self>, expected_sha256: &str) -> Result<u64, BlobError> {
        validate_key(expected_sha256)?;
        self.staged.seal(expected_sha256).await?;
        place(&self.blobs, &mut self.staged, expected_sha256).await
    }

    async fn abort(mut self: Box<Self>) {
        self.staged.discard().await;
    }
}

/// A process killed mid-download leaves its spools behind; their bytes were never verified, so
/// they are dropped rather than adopted.
pub(super) fn remove_leftover_spools(tmp: &Path) -> Result<(), BlobError> {
    let entries = std::fs::read_dir(tmp).map_err(|e| BlobError::io("listing", tmp, e))?;
    let mut removed = 0usize;
    for entry in entries {
        let path = entry.map_err(|e| BlobError::io("listing", tmp, e))?.path();
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            // Whatever stays in tmp/ is never served, so it is no reason to refuse to start.
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not remove leftover temp file"
            ),
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            dir = %tmp.display(),
            "removed temp files left by an earlier run"
        );
    }
    Ok(())
}

/// Renames a sealed staged file to `blobs/ab/cd/<sha256>` and makes the rename durable.
/// Committing a key that already exists is fine (content-addressed: same bytes): the staged
/// file is just removed. Returns the size.
async fn place(blobs: &Path, staged: &mut StagedFile, sha256: &str) -> Result<u64, BlobError> {
    let written = staged.written();
    let dir = blob_dir(blobs, sha256);
    let target = dir.join(sha256);
    match tokio::fs::metadata(&target).await {
        // Same key, same bytes: nothing to add.
        Ok(existing) if existing.len() == written => {
            staged.discard().await;
            return Ok(written);
        }
        // Same key but another size: the stored copy is damaged, the verified one replaces it.
        Ok(existing) => tracing::warn!(
            path = %target.display(),
            stored = existing.len(),
            verified = written,
            "replacing a stored blob whose size does not match its hash"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_blob_dir(blobs, sha256).await?,
        Err(e) => return Err(BlobError::io("reading metadata of", &target, e)),
    }
    tokio::fs::rename(staged.path(), &target)
        .await
        .map_err(|e| BlobError::io(&format!("moving {} to", staged.path().display()), &target, e))?;
    staged.moved();
    sync_dir(&dir).await?;
    Ok(written)
}

/// `blobs/ab/cd` for a key already validated.
fn blob_dir(blobs: &Path, sha256: &str) -> PathBuf {
    blobs.join(&sha256[..2]).join(&sha256[2..4])
}

/// Creates `blobs/ab/cd` and syncs the parents, so the new directory entries (and so the blob
/// renamed into them) survive a crash.
async fn create_blob_dir(blobs: &Path, sha256: &str) -> Result<(), BlobError> {
    let dir = blob_dir(blobs, sha256);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| BlobError::io("creating directory", &dir, e))?;
    sync_dir(&blobs.join(&sha256[..2])).await?;
    sync_dir(blobs).await
}

/// fsyncs a directory, making renames and creations in it durable (Unix semantics).
async fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    let handle = tokio::fs::File::open(dir)
        .await
        .map_err(|e| BlobError::io("opening directory", dir, e))?;
    handle
        .sync_all()
        .await
        .map_err(|e| BlobError::io("syncing directory", dir, e))
}

async fn write_and_read_probe(probe: &Path) -> Result<(), BlobError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(probe)
        .await
        .map_err(|e| BlobError::io("creating health probe", probe, e))?;
    file.write_all(HEALTH_PROBE)
        .await
        .map_err(|e| BlobError::io("writing health probe", probe, e))?;
    file.sync_all()
        .await
        .map_err(|e| BlobError::io("syncing health probe", probe, e))?;
    let read = tokio::fs::read(probe)
        .await
        .map_err(|e| BlobError::io("reading health probe", probe, e))?;
    if read != HEALTH_PROBE {
        return Err(BlobError::io(
            "reading health probe",
            probe,
            io::Error::new(io::ErrorKind::InvalidData, "read back other bytes"),
        ));
    }
    Ok(())
}

/// Walks `blobs/ab/cd/<key>`, keeping only valid keys in the directory their name points to
/// (anything else could not be found by `get`). Entries that vanish mid-walk (a concurrent
/// delete) are skipped.
fn list_blocking(blobs: &Path) -> Result<Vec<BlobEntry>, BlobError> {
    let mut found = Vec::new();
    for ab in read_dir_entries(blobs)? {
        let Some(ab_name) = hex_pair_dir(&ab) else {
            continue;
        };
        for cd in read_dir_entries(&ab)? {
            let Some(cd_name) = hex_pair_dir(&cd) else {
                continue;
            };
            for path in read_dir_entries(&cd)? {
                let Some(key) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if validate_key(key).is_err() || key[..2] != ab_name || key[2..4] != cd_name {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => found.push(BlobEntry {
                        sha256: key.to_owned(),
                        size: meta.len(),
                    }),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BlobError::io("reading metadata of", &path, e)),
                }
            }
        }
    }
    Ok(found)
}

/// Paths in `dir`; a directory that no longer exists is empty.
fn read_dir_entries(dir: &Path) -> Result<Vec<PathBuf>, BlobError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BlobError::io("listing", dir, e)),
    };
    entries
        .map(|entry| {
            entry
                .map(|e| e.path())
                .map_err(|e| BlobError::io("listing", dir, e))
        })
        .collect()
}

/// The name of a directory called like `ab` (two lower-case hex digits).
fn hex_pair_dir(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let ok = name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (ok && path.is_dir()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn open_store() -> (tempfile::TempDir, LocalBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn tmp_files(store: &LocalBlobStore) -> Vec<PathBuf> {
        std::fs::read_dir(store.root().join(TMP_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Deterministic bytes that do not repeat with any short period.
    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    async fn store_blob(store: &LocalBlobStore, data: &[u8]) -> String {
        let mut writer = store.put(None).await.unwrap();
        writer.write(data).await.unwrap();
        let key = sha(data);
        assert_eq!(writer.commit(&key).await.unwrap(), data.len() as u64);
        key
    }

    #[tokio::test]
    async fn committed_blob_is_seen_by_head_get_and_list() {
        let (_dir, store) = open_store();
        assert_eq!(store.name(), "local");
        let data = b"hello, wheel";
        let key = store_blob(&store, data).await;

        assert_eq!(store.head(&key).await.unwrap(), Some(data.len() as u64));
        let body = store.get(&key, None).await.unwrap().expect("stored");
        assert_eq!(body.size(), data.len() as u64);
        let BlobBody::File { path, size, .. } = body else {
            panic!("local store returns files");
        };
        assert_eq!(path, store.blob_path(&key).unwrap());
        assert!(path.starts_with(store.root().join(BLOBS_DIR).join(&key[..2]).join(&key[2..4])));
        assert_eq!(size, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(
            store.list().await.unwrap(),
            vec![BlobEntry {
                sha256: key,
                size: data.len() as u64
            }]
        );
        assert!(tmp_files(&store).is_empty());
    }

    #[tokio::test]
    async fn spool_is_invisible_before_commit() {
        let (_dir, store) = open_store();
        let data = b"not yet";
        let key = sha(data);
        let mut writer = store.put(None).await.unwrap();
        writer.write(data).await.unwrap();
        assert_eq!(writer.written(), data.len() as u64);
        assert!(writer.spool_path().starts_with(store.root().join(TMP_DIR)));
        assert_eq!(store.head(&key).await.unwrap(), None);
        assert!(store.get(&key, None).await.unwrap().is_none());
        assert!(store.list().await.unwrap().is_empty());
        writer.commit(&key).await.unwrap();
        assert_eq!(store.head(&key).await.unwrap(), Some(data.len() as u64));
    }

    #[tokio::test]
    async fn spool_reader_sees_bytes_so_far_and_finishes_after_commit() {
        use tokio::io::AsyncReadExt;

        let (_dir, store) = open_store();
        let mut writer = store.put(None).await.unwrap();
        writer.write(b"first half,").await.unwrap();

        let spool = writer.spool_path().to_path_buf();
        let mut reader = tokio::fs::File::open(&spool).await.unwrap();
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"first half,");

        writer.write(b" second half").await.unwrap();
        let key = sha(b"first half, second half");
        writer.commit(&key).await.unwrap();
        assert!(!spool.exists(), "the spool was renamed into place");

        reader.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"first half, second half");
        assert_eq!(store.head(&key).await.unwrap(), Some(seen.len() as u64));
    }

    #[tokio::test]
    async fn hash_mismatch_stores_nothing_and_removes_spool() {
        let (_dir, store) = open_store();
        let mut writer = store.put(None).await.unwrap();
        writer.write(b"tampered").await.unwrap();
        let spool = writer.spool_path().to_path_buf();
        let expected = sha(b"original");
        let err = writer.commit(&expected).await.unwrap_err();
        let BlobError::HashMismatch { expected: e, actual } = &err else {
            panic!("expected HashMismatch, got {err:?}");
        };
        assert_eq!(e, &expected);
        assert_eq!(actual, &sha(b"tampered"));
        assert!(!spool.exists());
        assert_eq!(store.head(&expected).await.unwrap(), None);
        assert_eq!(store.head(&sha(b"tampered")).await.unwrap(), None);
        assert!(store.list().await.unwrap().is_empty());
        assert!(tmp_files(&store).is_empty());
    }

    #[tokio::test]
    async fn abort_and_drop_remove_the_spool() {
        let (_dir, store) = open_store();

        let mut aborted = store.put(None).await.unwrap();
        aborted.write(b"abandoned").await.unwrap();
        let spool = aborted.spool_path().to_path_buf();
        assert!(spool.exists());
        aborted.abort().await;
        assert!(!spool.exists());

        let mut dropped = store.put(None).await.unwrap();
        dropped.write(b"abandoned too").await.unwrap();
        let spool = dropped.spool_path().to_path_buf();
        assert!(spool.exists());
        drop(dropped);
        assert!(!spool.exists());

        assert!(tmp_files(&store).is_empty());
        assert!(store.list().await.unwrap().is_empty());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn committing_an_existing_key_keeps_one_copy() {
        use std::os::unix::fs::MetadataExt;

        let (_dir, store) = open_store();
        let data = b"same bytes twice";
        let key = store_blob(&store, data).await;
        let stored = store.blob_path(&key).unwrap();
        let inode_before = std::fs::metadata(&stored).unwrap().ino();

        let again = store_blob(&store, data).await;
        assert_eq!(again, key);
        assert_eq!(
            std::fs::metadata(&stored).unwrap().ino(),
            inode_before,
            "the stored copy was left as it was"
        );
        assert_eq!(store.list().await.unwrap().len(), 1);
        assert!(tmp_files(&store).is_empty());
    }

    #[tokio::test]
    async fn commit_replaces_a_stored_copy_of_the_wrong_size() {
        let (_dir, store) = open_store();
        let data = b"the real bytes";
        let key = sha(data);
        let stored = store.blob_path(&key).unwrap();
        std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
        std::fs::write(&stored, b"truncat").unwrap();

        store_blob(&store, data).await;
        assert_eq!(std::fs::read(&stored).unwrap(), data);
        assert!(tmp_files(&store).is_empty());
    }

    #[tokio::test]
    async fn invalid_keys_are_rejected_before_touching_the_filesystem() {
        let (dir, store) = open_store();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let victim_key = victim.to_str().unwrap().to_owned();
        // With the blob tree gone, any filesystem access would answer "not found" (Ok(None) /
        // Ok(false)) rather than InvalidKey.
        std::fs::remove_dir_all(store.root().join(BLOBS_DIR)).unwrap();
        std::fs::remove_dir_all(store.root().join(QUARANTINE_DIR)).unwrap();

        let bad_keys = [
            "../x".to_owned(),
            "A".repeat(64),
            "a".repeat(63),
            "/etc/passwd".to_owned(),
            "../../../../../../../../../../../../../../../../../../../../etc/passwd".to_owned(),
            victim_key,
        ];
        for key in &bad_keys {
            let invalid = |r: Result<(), BlobError>| matches!(r, Err(BlobError::InvalidKey(_)));
            assert!(invalid(store.blob_path(key).map(drop)), "{key}");
            assert!(invalid(store.get(key, None).await.map(drop)), "{key}");
            assert!(invalid(store.head(key).await.map(drop)), "{key}");
            assert!(invalid(store.delete(key).await.map(drop)), "{key}");
            assert!(invalid(store.quarantine(key).await.map(drop)), "{key}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(!store.root().join(BLOBS_DIR).exists());
        assert!(!store.root().join(QUARANTINE_DIR).exists());
    }

    #[tokio::test]
    async fn commit_with_an_invalid_key_stores_nothing() {
        let (_dir, store) = open_store();
        let data = b"bytes";
        let mut writer = store.put(None).await.unwrap();
        writer.write(data).await.unwrap();
        let spool = writer.spool_path().to_path_buf();
        let err = writer.commit(&sha(data).to_uppercase()).await.unwrap_err();
        assert!(matches!(err, BlobError::InvalidKey(_)), "{err:?}");
        assert!(!spool.exists());
        assert!(store.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn open_removes_leftover_spools() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(TMP_DIR);
        std::fs::create_dir_all(&tmp).unwrap();
        let data = b"half a download";
        std::fs::write(tmp.join("123-0-456.part"), data).unwrap();
        std::fs::write(tmp.join(format!("{}.part", sha(data))), data).unwrap();

        let store = LocalBlobStore::open(dir.path()).unwrap();
        assert!(tmp_files(&store).is_empty());
        assert!(store.list().await.unwrap().is_empty());
        assert_eq!(store.head(&sha(data)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn reopening_keeps_committed_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let key = store_blob(&LocalBlobStore::open(dir.path()).unwrap(), b"durable").await;
        let store = LocalBlobStore::open(dir.path()).unwrap();
        assert_eq!(store.head(&key).await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn quarantine_takes_a_blob_out_of_service() {
        let (_dir, store) = open_store();
        let key = store_blob(&store, b"suspicious").await;
        let kept = store_blob(&store, b"fine").await;

        assert!(store.quarantine(&key).await.unwrap());
        assert!(store.get(&key, None).await.unwrap().is_none());
        assert_eq!(store.head(&key).await.unwrap(), None);
        let listed: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.sha256)
            .collect();
        assert_eq!(listed, vec![kept]);
        assert_eq!(
            std::fs::read(store.root().join(QUARANTINE_DIR).join(&key)).unwrap(),
            b"suspicious"
        );
        assert!(!store.quarantine(&key).await.unwrap());
    }

    #[tokio::test]
    async fn delete_removes_a_blob_once() {
        let (_dir, store) = open_store();
        let key = store_blob(&store, b"evict me").await;
        assert!(store.delete(&key).await.unwrap());
        assert!(store.get(&key, None).await.unwrap().is_none());
        assert!(store.list().await.unwrap().is_empty());
        assert!(!store.delete(&key).await.unwrap());
    }

    #[tokio::test]
    async fn digest_so_far_is_the_hash_of_the_prefix() {
        let (_dir, store) = open_store();
        let mut writer = store.put(None).await.unwrap();
        assert_eq!(writer.digest_so_far(), sha(b""));
        writer.write(b"abc").await.unwrap();
        assert_eq!(writer.digest_so_far(), sha(b"abc"));
        writer.write(b"def").await.unwrap();
        assert_eq!(writer.digest_so_far(), sha(b"abcdef"));
        // Reading the digest does not finish the hash: commit still sees every byte.
        assert_eq!(writer.commit(&sha(b"abcdef")).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn three_mib_in_64_kib_chunks() {
        let (_dir, store) = open_store();
        let data = pseudo_random(3 * 1024 * 1024);
        let mut writer = store.put(None).await.unwrap();
        for chunk in data.chunks(64 * 1024) {
            writer.write(chunk).await.unwrap();
        }
        assert_eq!(writer.written(), data.len() as u64);
        let key = sha(&data);
        assert_eq!(writer.commit(&key).await.unwrap(), data.len() as u64);
        assert_eq!(store.head(&key).await.unwrap(), Some(data.len() as u64));
        assert_eq!(std::fs::read(store.blob_path(&key).unwrap()).unwrap(), data);
    }

    #[tokio::test]
    async fn list_ignores_what_is_not_a_blob_in_its_place() {
        let (_dir, store) = open_store();
        let key = store_blob(&store, b"the one").await;
        let blobs = store.root().join(BLOBS_DIR);
        let other = sha(b"misplaced");
        let junk = [
            blobs.join("README"),
            blobs.join(&key[..2]).join("stray"),
            blobs.join(&key[..2]).join(&key[2..4]).join("notes.txt"),
            blobs.join(&key[..2]).join(&key[2..4]).join(key.to_uppercase()),
            // A valid key in a directory its name does not point to: `get` could never find it.
            blobs.join(&key[..2]).join(&key[2..4]).join(&other),
            blobs.join("AB").join("cd").join(&other),
            blobs.join(&other),
        ];
        for path in &junk {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"junk").unwrap();
        }
        // A directory named like a key is not a blob either.
        std::fs::create_dir_all(blobs.join(&other[..2]).join(&other[2..4]).join(&other)).unwrap();

        let listed = store.list().await.unwrap();
        assert_eq!(listed, vec![BlobEntry { sha256: key, size: 7 }]);
    }

    #[tokio::test]
    async fn health_probes_and_cleans_up() {
        let (_dir, store) = open_store();
        store.health().await.unwrap();
        assert!(tmp_files(&store).is_empty());

        std::fs::remove_dir_all(store.root().join(TMP_DIR)).unwrap();
        let err = store.health().await.unwrap_err();
        assert!(err.to_string().starts_with("creating health probe "), "{err}");
    }

    #[tokio::test]
    async fn put_reports_where_it_failed() {
        let (_dir, store) = open_store();
        std::fs::remove_dir_all(store.root().join(TMP_DIR)).unwrap();
        let err = store.put(None).await.err().expect("tmp/ is gone");
        let BlobError::Io { context, source } = &err else {
            panic!("expected Io, got {err:?}");
        };
        assert!(context.starts_with("creating spool "), "{context}");
        assert!(context.contains(TMP_DIR), "{context}");
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }

    /// A real ENOSPC from the OS: `/dev/full` fails every write with it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn full_disk_is_no_space_and_fails_the_writer() {
        let (dir, _store) = open_store();
        // The spool path must not be /dev/full itself: Drop removes the spool.
        let spool = dir.path().join("tmp").join("full.part");
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .unwrap();
        let mut writer: Box<dyn BlobWriter> = Box::new(LocalBlobWriter {
            staged: StagedFile::with_file(spool.clone(), file),
            blobs: dir.path().join(BLOBS_DIR),
        });

        let err = writer.write(b"does not fit").await.unwrap_err();
        assert!(
            matches!(&err, BlobError::NoSpace { path } if *path == spool),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("no space left on device while writing {}", spool.display())
        );
        assert_eq!(writer.written(), 0);

        let again = writer.write(b"more").await.unwrap_err();
        assert!(matches!(again, BlobError::WriterFailed { .. }), "{again:?}");
        let commit = writer.commit(&sha(b"")).await.unwrap_err();
        assert!(matches!(commit, BlobError::WriterFailed { .. }), "{commit:?}");
    }
}
