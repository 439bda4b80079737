//! What one index said about a page, as the page store keeps it, and how a refresh reads it back:
//! its head (when it was fetched, its ETag, whether it lists anything) at once, its content only
//! where the refresh uses it. A big project's snapshot decodes to several times its stored size,
//! so a refresh that replaces it must not hold the old model beside the new one. Snapshots are
//! JSON, zstd-compressed as they are written and read as they are decompressed: a 300,000-file
//! page's is 65 MB as JSON and a few MB stored, and that is all a refresh holds of it.

use std::fmt;
use std::io::BufReader;

use serde::de::{DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::CacheError;
use crate::pypi::model::{ProjectList, ProjectPage};

/// What one index said about a page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub fetched_at: u64,
    pub etag: Option<String>,
    pub content: SnapshotContent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum SnapshotContent {
    Project(ProjectPage),
    List(ProjectList),
    /// The index answered 404: cached for its TTL like any answer.
    Missing,
}

impl SnapshotContent {
    /// Whether the page lists nothing (no file, or no project).
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Project(p) => p.files.is_empty(),
            Self::List(l) => l.projects.is_empty(),
            Self::Missing => true,
        }
    }

    /// Whether an HTML page carries the marks of a Simple API page: PEP 629's
    /// `pypi:repository-version` meta tag, or at least one link it could read. An empty page is
    /// believed only with the meta tag: that is how a project really emptied upstream is told
    /// from a page that is no index page at all.
    pub fn says_it_is_an_index_page(&self) -> bool {
        let meta = match self {
            Self::Project(p) => &p.meta,
            Self::List(l) => &l.meta,
            Self::Missing => return true,
        };
        meta.api_version.is_some() || !self.is_empty()
    }
}

/// How a zstd frame starts; a snapshot that does not is plain JSON (an older pkgmirror's).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// A fast level: a snapshot is written by every refresh that changed it.
const ZSTD_LEVEL: i32 = 3;

impl Snapshot {
    pub fn encode(&self) -> Result<Vec<u8>, CacheError> {
        let failed = |e: std::io::Error| CacheError::Internal(format!("cannot encode a snapshot: {e}"));
        let mut encoder = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(failed)?;
        serde_json::to_writer(&mut encoder, self).map_err(|e| failed(e.into()))?;
        encoder.finish().map_err(failed)
    }
}

/// Reads stored snapshot bytes as `T`; `None` when they are not one.
fn decode<T: DeserializeOwned>(encoded: &[u8]) -> Option<T> {
    if encoded.starts_with(&ZSTD_MAGIC) {
        let decompressed = zstd::Decoder::with_buffer(encoded).ok()?;
        // serde_json reads a reader byte by byte: buffered, that is a copy, not a decoder call.
        serde_json::from_reader(BufReader::new(decompressed)).ok()
    } else {
        serde_json::from_slice(encoded).ok()
    }
}

/// A snapshot as stored, with its head read and its content still encoded.
pub(super) struct StoredSnapshot {
    pub fetched_at: u64,
    pub etag: Option<String>,
    /// Whether its content lists no file (no project, for the list) or is a 404.
    pub lists_nothing: bool,
    encoded: Vec<u8>,
}

impl StoredSnapshot {
    /// Reads the head, skipping over the content without building it; `None` for bytes that are
    /// no snapshot (an older pkgmirror's, say), which count as no snapshot at all. Blocking: the
    /// bytes can be tens of megabytes.
    pub fn read(encoded: Vec<u8>) -> Option<Self> {
        let head: Head = decode(&encoded)?;
        Some(Self {
            fetched_at: head.fetched_at,
            etag: head.etag,
            lists_nothing: match head.content {
                Shape::Project { files: Count(n) } | Shape::List { projects: Count(n) } => n == 0,
                Shape::Missing => true,
            },
            encoded,
        })
    }

    /// The whole snapshot, decoded on the blocking pool; `None` when its content is unreadable.
    pub async fn decode(self) -> Option<Snapshot> {
        tokio::task::spawn_blocking(move || {
            let mut snapshot: Snapshot = decode(&self.encoded)?;
            drop(self.encoded);
            if let SnapshotContent::Project(page) = &mut snapshot.content {
                page.files.iter_mut().for_each(|file| file.shrink_to_fit());
            }
            Some(snapshot)
        })
        .await
        .ok()
        .flatten()
    }
}

#[derive(Deserialize)]
struct Head {
    fetched_at: u64,
    etag: Option<String>,
    content: Shape,
}

/// [`SnapshotContent`] reduced to how many entries it lists; every other field is skipped.
#[derive(Deserialize)]
enum Shape {
    Project { files: Count },
    List { projects: Count },
    Missing,
}

/// The length of a sequence, read without building its elements.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> Visitor<'de> for Counter {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        deserializer.deserialize_seq(Counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::model::{DistFile, Hashes, PageMeta};

    fn snapshot(content: SnapshotContent) -> Snapshot {
        Snapshot {
            fetched_at: 42,
            etag: Some("\"v1\"".into()),
            content,
        }
    }

    fn project(files: usize) -> SnapshotContent {
        SnapshotContent::Project(ProjectPage {
            name: "demo".into(),
            files: (0..files)
                .map(|i| DistFile {
                    filename: format!("demo-{i}.0.tar.gz"),
                    url: format!("https://files.example/demo-{i}.0.tar.gz"),
                    // The first file: no hashes, metadata of unknown hash.
                    hashes: Hashes::from_iter((i > 0).then(|| ("sha256".to_owned(), "ab".repeat(32)))),
                    requires_python: None,
                    yanked: None,
                    core_metadata: (i == 0).then(Hashes::new),
                    gpg_sig: None,
                    size: Some(10),
                    upload_time: None,
                    provenance: None,
                })
                .collect(),
            versions: Some(vec!["1.0".into()]),
            project_status: None,
            meta: PageMeta::default(),
        })
    }

    #[tokio::test]
    async fn the_head_is_read_apart_from_the_content() {
        let cases = [
            (project(3), false),
            (project(0), true),
            (SnapshotContent::List(ProjectList::default()), true),
            (SnapshotContent::Missing, true),
        ];
        for (content, lists_nothing) in cases {
            let original = snapshot(content);
            let encoded = original.encode().unwrap();
            assert!(encoded.starts_with(&ZSTD_MAGIC));
            if !lists_nothing {
                let text = String::from_utf8(zstd::decode_all(&encoded[..]).unwrap()).unwrap();
                assert!(text.contains(r#""hashes":{},"core_metadata":{}"#), "{text}");
            }
            let stored = StoredSnapshot::read(encoded).unwrap();
            assert_eq!(stored.fetched_at, 42);
            assert_eq!(stored.etag.as_deref(), Some("\"v1\""));
            assert_eq!(stored.lists_nothing, lists_nothing, "{original:?}");
            let decoded = stored.decode().await.unwrap();
            assert_eq!(decoded.content.is_empty(), lists_nothing);
            assert_eq!(
                serde_json::to_value(&decoded.content).unwrap(),
                serde_json::to_value(&original.content).unwrap()
            );
        }
    }

    #[tokio::test]
    async fn a_plain_json_snapshot_of_an_older_pkgmirror_still_reads() {
        let original = snapshot(project(2));
        let plain = serde_json::to_vec(&original).unwrap();
        let stored = StoredSnapshot::read(plain).unwrap();
        assert_eq!(stored.etag.as_deref(), Some("\"v1\""));
        assert!(!stored.lists_nothing);
        let decoded = stored.decode().await.unwrap();
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&original).unwrap()
        );
    }

    #[tokio::test]
    async fn bytes_that_are_no_snapshot_are_none() {
        assert!(StoredSnapshot::read(b"not json".to_vec()).is_none());
        let truncated = snapshot(project(2)).encode().unwrap()[..20].to_vec();
        assert!(StoredSnapshot::read(truncated).is_none(), "a cut zstd frame");
        assert!(StoredSnapshot::read(br#"{"fetched_at": 1}"#.to_vec()).is_none());
        // A head that reads but a content that does not: decoding says so.
        let odd = br#"{"fetched_at": 1, "etag": null, "content": {"Project": {"files": [1, 2]}}}"#;
        let stored = StoredSnapshot::read(odd.to_vec()).unwrap();
        assert!(!stored.lists_nothing);
        assert!(stored.decode().await.is_none());
    }
}
