//! Records: small documents that every node sharing a store must agree on (access tokens, and
//! the hosted indexes' projects). Their truth is the store `storage.backend` names, never a
//! node's own database: a directory under the data dir for `local`, `{prefix}records/` in the
//! bucket for `s3` and `tiered`, so nodes on one bucket share them.
//!
//! Every write is a compare-and-swap on the record's version: create only if absent, replace only
//! if unchanged since it was read (S3 conditional writes, `If-None-Match: *` and `If-Match`; in
//! the directory, a lock that the server and the CLI both take). Two writers racing on one record
//! never lose an update: the second is told, reads again and retries.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::blob::BlobError;
use super::blob::S3BlobStore;
use crate::config::{StorageBackend, StorageConfig};

/// Where the directory store keeps its records, under the data dir.
pub const RECORDS_DIR: &str = "records";
/// The biggest record read back: they are small documents, and a store is not trusted to say so.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
const LOCK_FILE: &str = ".lock";
const MAX_SEGMENT: usize = 128;

/// A record's place: `/`-separated segments of lower-case letters, digits, `.`, `_` and `-`,
/// none starting with `.`, so no key can name anything outside the records' own place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn new(segments: &[&str]) -> Result<Self, BlobError> {
        if segments.is_empty() || !segments.iter().all(|s| valid_segment(s)) {
            return Err(BlobError::Remote(format!(
                "invalid record key {:?}",
                segments.join("/").chars().take(200).collect::<String>()
            )));
        }
        Ok(Self(segments.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key `rest` (`/`-separated) names under `prefix`, when it is a valid one.
    pub fn under(prefix: &RecordKey, rest: &str) -> Option<Self> {
        let mut segments: Vec<&str> = prefix.0.split('/').collect();
        segments.extend(rest.split('/'));
        Self::new(&segments).ok()
    }
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// A record as read: its bytes and the version a replacement must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub body: Vec<u8>,
    pub version: String,
}

/// What a write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No record yet: the write creates it.
    Absent,
    /// The record as last read: the write replaces exactly that version.
    Version(String),
}

#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, BlobError>;
    /// Writes `body` at `key` if the record is as `expect` says; `Ok(false)` (nothing written)
    /// when it is not: another writer came first.
    async fn put(&self, key: &RecordKey, body: &[u8], expect: Expect) -> Result<bool, BlobError>;
    /// The keys under `prefix`, sorted.
    async fn list(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, BlobError>;
}

/// The record store `storage` names: the bucket for `s3` and `tiered` (so nodes on it share
/// them), else `records/` in the data dir. Opening it touches nothing else (the CLI opens it
/// beside a running server).
pub async fn open(storage: &StorageConfig) -> Result<Arc<dyn RecordStore>, BlobError> {
    Ok(match storage.backend {
        StorageBackend::Local => Arc::new(DirRecordStore::open(&storage.data_dir.join(RECORDS_DIR))?),
        StorageBackend::S3 | StorageBackend::Tiered => {
            Arc::new(S3BlobStore::connect_for_records(&storage.s3).await?)
        }
    })
}

/// Records as files in a directory. The lock file serializes writers across processes (the
/// server and `pkgmirror token ...` on the same data dir); the mutex, the threads of one.
#[derive(Clone)]
pub struct DirRecordStore {
    root: Arc<PathBuf>,
    writers: Arc<Mutex<()>>,
}

impl DirRecordStore {
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root).map_err(|e| BlobError::io("creating directory", root, e))?;
        Ok(Self {
            root: Arc::new(root.to_path_buf()),
            writers: Arc::new(Mutex::new(())),
        })
    }

    fn path(&self, key: &RecordKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn read(&self, key: &RecordKey) -> Result<Option<Record>, BlobError> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::io("opening", &path, e)),
        };
        let mut body = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_RECORD_BYTES + 1), &mut body)
            .map_err(|e| BlobError::io("reading", &path, e))?;
        if body.len() as u64 > MAX_RECORD_BYTES {
            return Err(BlobError::Remote(format!(
                "{} is over {MAX_RECORD_BYTES} bytes",
                path.display()
            )));
        }
        let version = hex::encode(&Sha256::digest(&body)[..16]);
        Ok(Some(Record { body, version }))
    }

    fn write(&self, key: &RecordKey, body: &[u8], expect: &Expect) -> Result<bool, BlobError> {
        let _threads = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BlobError::io("opening", &lock_path, e))?;
        lock.lock().map_err(|e| BlobError::io("locking", &lock_path, e))?;
        let current = self.read(key)?;
        let holds = match (expect, &current) {
            (Expect::Absent, None) => true,
            (Expect::Version(version), Some(record)) => *version == record.version,
            _ => false,
        };
        if !holds {
            return Ok(false);
        }
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| BlobError::io("creating directory", dir, e))?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(body)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(BlobError::io("writing", &path, e));
        }
        Ok(true)
    }

    fn keys(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, BlobError> {
        let mut keys = Vec::new();
        let mut dirs = vec![(self.path(prefix), String::new())];
        while let Some((dir, rel)) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BlobError::io("listing", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| BlobError::io("listing", &dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    dirs.push((entry.path(), rel));
                } else if let Some(key) = RecordKey::under(prefix, &rel) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl RecordStore for DirRecordStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, BlobError> {
        let (store, key) = (self.clone(), key.clone());
        blocking(move || store.read(&key)).await
    }

    async fn put(&self, key: &RecordKey, body: &[u8], expect: Expect) -> Result<bool, BlobError> {
        let (store, key, body) = (self.clone(), key.clone(), body.to_vec());
        blocking(move || store.write(&key, &body, &expect)).await
    }

    async fn list(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, BlobError> {
        let (store, prefix) = (self.clone(), prefix.clone());
        blocking(move || store.keys(&prefix)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlobError::Remote(format!("a record task failed: {e}")))?
}

/// What every record store must do, for each implementation's tests.
#[cfg(test)]
pub(crate) async fn behaves_as_a_record_store(store: &dyn RecordStore) {
    let key = RecordKey::new(&["tokens", "abc"]).unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert!(
        !store
            .put(&key, b"v1", Expect::Version("nope".into()))
            .await
            .unwrap(),
        "nothing to replace"
    );
    assert!(store.put(&key, b"v1", Expect::Absent).await.unwrap());
    assert!(
        !store.put(&key, b"again", Expect::Absent).await.unwrap(),
        "created once only"
    );
    let first = store.get(&key).await.unwrap().unwrap();
    assert_eq!(first.body, b"v1");
    assert!(
        store
            .put(&key, b"v2", Expect::Version(first.version.clone()))
            .await
            .unwrap()
    );
    assert!(
        !store
            .put(&key, b"v3", Expect::Version(first.version.clone()))
            .await
            .unwrap(),
        "a stale version loses"
    );
    assert_eq!(store.get(&key).await.unwrap().unwrap().body, b"v2");

    let other = RecordKey::new(&["tokens", "def"]).unwrap();
    let elsewhere = RecordKey::new(&["hosted", "pypi", "internal", "demo"]).unwrap();
    assert!(store.put(&other, b"x", Expect::Absent).await.unwrap());
    assert!(store.put(&elsewhere, b"y", Expect::Absent).await.unwrap());
    let tokens = RecordKey::new(&["tokens"]).unwrap();
    assert_eq!(store.list(&tokens).await.unwrap(), vec![key, other]);
    let hosted = RecordKey::new(&["hosted", "pypi"]).unwrap();
    assert_eq!(store.list(&hosted).await.unwrap(), vec![elsewhere]);
    assert!(
        store
            .list(&RecordKey::new(&["none"]).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_nothing_outside_their_place() {
        for bad in [
            &[][..],
            &[""],
            &[".."],
            &["a", ".hidden"],
            &["A"],
            &["a/b"],
            &["a b"],
        ] {
            assert!(RecordKey::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RecordKey::new(&["hosted", "pypi", "a.b_c-1"]).unwrap().as_str(),
            "hosted/pypi/a.b_c-1"
        );
    }

    #[tokio::test]
    async fn a_directory_is_a_record_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordStore::open(dir.path()).unwrap();
        behaves_as_a_record_store(&store).await;
        // Another handle (another process, as the CLI is) sees the same records.
        let again = DirRecordStore::open(dir.path()).unwrap();
        let key = RecordKey::new(&["tokens", "abc"]).unwrap();
        assert_eq!(again.get(&key).await.unwrap().unwrap().body, b"v2");
    }

    #[tokio::test]
    async fn racing_writers_each_win_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordStore::open(dir.path()).unwrap();
        let key = RecordKey::new(&["counter"]).unwrap();
        store.put(&key, b"0", Expect::Absent).await.unwrap();
        // Eight writers each add one, retrying on a lost race: no increment may be lost.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let record = store.get(&key).await.unwrap().unwrap();
                    let n: u32 = std::str::from_utf8(&record.body).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    if store
                        .put(&key, next.as_bytes(), Expect::Version(record.version))
                        .await
                        .unwrap()
                    {
                        break;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.get(&key).await.unwrap().unwrap().body, b"8");
    }
}
