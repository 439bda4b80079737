//! Blobs in an S3-compatible bucket: `{prefix}sha256/ab/cd/<sha256>`, the local layout's keys.
//!
//! Bytes are staged in a local file first (the download flow serves waiting clients from it) and
//! uploaded as they arrive: once `part_size` bytes are staged a multipart upload starts, and each
//! full part goes up while the download goes on. The object appears only at commit, after the
//! sha256 is checked: a small blob is then sent with one `PutObject` carrying its sha256 (which S3
//! checks again), a large one's multipart upload is completed, or aborted on a mismatch, so a
//! failed or wrong download never leaves an object behind.
//!
//! A bucket that cannot be reached opens a breaker for [`RETRY_AFTER`](breaker::RETRY_AFTER):
//! meanwhile operations fail at once with [`BlobError::Unavailable`] instead of each waiting for
//! a timeout, and the first one after it tries the bucket again, so recovery needs nobody.
//!
//! By job: `client.rs` builds the SDK client, `keys.rs` is the key layout, `breaker.rs` the
//! breaker and which errors open it, `read.rs` ranged reads, `writer.rs` the blob writer and
//! `multipart.rs` its upload of parts while bytes arrive, `orphans.rs` what `cache gc
//! --s3-orphans` cleans up; this file is the store itself.

mod breaker;
mod client;
mod keys;
mod multipart;
mod orphans;
mod read;
mod records;
#[cfg(test)]
mod testing;
mod writer;

pub use orphans::{ABANDONED_AFTER, OpenUpload};
pub(super) use writer::S3BlobWriter;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::ConfigLoader;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as S3Body;

use self::breaker::BucketBreaker;
use self::keys::{Keys, copy_source};
use super::staging::unique_name;
use super::{BlobBody, BlobEntry, BlobError, BlobStore, BlobWriter, ByteRange};
use crate::config::S3Config;

const HEALTH_PROBE: &[u8] = b"pkgmirror blob store health probe\n";

#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bucket: String,
    keys: Keys,
    part_size: u64,
    /// Where blobs are staged before upload; `None` in a store opened for records only.
    staging: Option<PathBuf>,
    /// "s3://bucket/prefix at endpoint", for messages.
    location: String,
    breaker: BucketBreaker,
}

impl S3BlobStore {
    /// Builds the client (credentials from the AWS SDK's standard chain: the `AWS_*` variables,
    /// profiles, instance roles) and prepares `staging`, removing spools an earlier run left.
    /// Does not touch the bucket: [`BlobStore::health`] is the start-up check.
    pub async fn connect(config: &S3Config, staging: &Path) -> Result<Self, BlobError> {
        Self::connect_with(client::loader(config), config, Some(staging)).await
    }

    /// A store for the bucket's records only (what `pkgmirror token` uses beside a running
    /// server): it stages nothing, so it leaves the server's staging directory alone.
    pub async fn connect_for_records(config: &S3Config) -> Result<Self, BlobError> {
        Self::connect_with(client::loader(config), config, None).await
    }

    /// [`S3BlobStore::connect`] with the SDK's shared settings from `loader` (tests give it
    /// their own credentials).
    async fn connect_with(
        loader: ConfigLoader,
        config: &S3Config,
        staging: Option<&Path>,
    ) -> Result<Self, BlobError> {
        if let Some(staging) = staging {
            std::fs::create_dir_all(staging).map_err(|e| BlobError::io("creating directory", staging, e))?;
            super::local::remove_leftover_spools(staging)?;
        }
        let client = client::build(&loader.load().await, config);
        let keys = Keys::new(&config.prefix);
        let endpoint = if config.endpoint.is_empty() {
            "the default AWS endpoint".to_owned()
        } else {
            config.endpoint.clone()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                location: format!(
                    "bucket '{}' (prefix '{}') at {endpoint}",
                    config.bucket,
                    keys.prefix()
                ),
                bucket: config.bucket.clone(),
                keys,
                part_size: config.part_size,
                staging: staging
                    .map(|staging| std::path::absolute(staging).unwrap_or_else(|_| staging.to_path_buf())),
                breaker: BucketBreaker::default(),
            }),
        })
    }

    /// "bucket 'b' (prefix 'p/') at http://…": where this store keeps its blobs.
    pub fn location(&self) -> &str {
        &self.inner.location
    }
}

impl Inner {
    /// Every object whose key starts with `root`, page after page.
    async fn objects_under(&self, root: &str) -> Result<Vec<aws_sdk_s3::types::Object>, BlobError> {
        self.check()?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(root)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failed("listing", root, e))?;
            objects.extend(page.contents.unwrap_or_default());
        }
        self.succeeded();
        Ok(objects)
    }

    async fn delete_key(&self, key: &str) -> Result<(), BlobError> {
        self.check()?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("deleting", key, e))?;
        self.succeeded();
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, expected_sha256: Option<&str>) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.put_keeping_in(expected_sha256, None).await?))
    }

    async fn get(&self, sha256: &str, range: Option<ByteRange>) -> Result<Option<BlobBody>, BlobError> {
        let key = self.inner.keys.blob(sha256)?;
        self.inner.read(key, range).await
    }

    async fn head(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        let key = self.inner.keys.blob(sha256)?;
        self.inner.head_key(&key).await
    }

    async fn delete(&self, sha256: &str) -> Result<bool, BlobError> {
        let key = self.inner.keys.blob(sha256)?;
        // DeleteObject succeeds whether or not the key exists; the caller wants to know.
        if self.inner.head_key(&key).await?.is_none() {
            return Ok(false);
        }
        self.inner.delete_key(&key).await?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let inner = &self.inner;
        let objects = inner.objects_under(&inner.keys.blobs()).await?;
        // Only keys where `get` would look.
        Ok(objects
            .iter()
            .filter_map(|object| {
                let sha256 = object.key().and_then(|key| inner.keys.sha256_of(key))?;
                Some(BlobEntry {
                    sha256: sha256.to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect())
    }

    async fn quarantine(&self, sha256: &str) -> Result<bool, BlobError> {
        let inner = &self.inner;
        let key = inner.keys.blob(sha256)?;
        if inner.head_key(&key).await?.is_none() {
            return Ok(false);
        }
        let dest = inner.keys.quarantine(sha256);
        inner
            .client
            .copy_object()
            .bucket(&inner.bucket)
            .key(&dest)
            .copy_source(copy_source(&inner.bucket, &key))
            .send()
            .await
            .map_err(|e| inner.failed("copying to quarantine", &key, e))?;
        inner.delete_key(&key).await?;
        tracing::warn!(sha256, dest = %dest, "blob quarantined");
        Ok(true)
    }

    fn layers(&self) -> Vec<&dyn BlobStore> {
        vec![self]
    }

    /// Writes, reads back and deletes a small object: reachable, writable and readable. Runs
    /// even while the breaker is open (it is how `/health` sees the bucket come back).
    async fn health(&self) -> Result<(), BlobError> {
        let inner = &self.inner;
        let key = format!("{}{}", inner.keys.temporary(), unique_name("probe"));
        let written = inner
            .client
            .put_object()
            .bucket(&inner.bucket)
            .key(&key)
            .body(S3Body::from_static(HEALTH_PROBE))
            .send()
            .await;
        written.map_err(|e| inner.failed("writing the health probe", &key, e))?;
        let read = inner
            .client
            .get_object()
            .bucket(&inner.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| inner.failed("reading the health probe", &key, e))?
            .body
            .collect()
            .await
            .map_err(|e| {
                BlobError::Unavailable(format!(
                    "reading the health probe {key} in {}: {e}",
                    inner.location
                ))
            })?
            .into_bytes();
        let deleted = inner
            .client
            .delete_object()
            .bucket(&inner.bucket)
            .key(&key)
            .send()
            .await;
        deleted.map_err(|e| inner.failed("deleting the health probe", &key, e))?;
        if read.as_ref() != HEALTH_PROBE {
            return Err(BlobError::Remote(format!(
                "the health probe {key} in {} read back other bytes",
                inner.location
            )));
        }
        inner.succeeded();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Fixture, read_body, sha256, some_bytes};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_finds_blobs_only_where_get_looks() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let data = some_bytes(1234, 3);
        let sha = f.put_blob(&data).await;
        let other = sha256(b"not stored as a blob");
        let pairs = format!("{}/{}", &other[..2], &other[2..4]);
        for key in [
            format!("mirror/sha256/ff/ff/{other}"),
            format!("mirror/sha256/{pairs}/{other}.part"),
            "mirror/sha256/readme.txt".to_owned(),
            format!("elsewhere/sha256/{pairs}/{other}"),
            format!("mirror/quarantine/{other}"),
            "mirror/tmp/probe".to_owned(),
        ] {
            f.put_object(&key, b"not a blob").await;
        }
        assert_eq!(
            f.store.list().await.unwrap(),
            [BlobEntry {
                sha256: sha.clone(),
                size: 1234
            }]
        );
        assert!(f.store.get(&other, None).await.unwrap().is_none());
        let (size, _, bytes) = read_body(f.store.get(&sha, None).await.unwrap().unwrap()).await;
        assert_eq!(size, 1234);
        assert!(bytes == data, "the listed blob reads back other bytes");
    }
}
