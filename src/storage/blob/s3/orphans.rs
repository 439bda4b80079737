//! What a process that died left in the bucket, for `cache gc --s3-orphans`: multipart uploads
//! never completed, and health probes never deleted.

use std::time::{Duration, SystemTime};

use super::S3BlobStore;
use crate::storage::blob::BlobError;

/// An upload `gc --s3-orphans` finds still open after this long was left by a process that died.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// An incomplete multipart upload (see `cache gc --s3-orphans`).
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

impl S3BlobStore {
    /// Multipart uploads under the prefix that were never completed.
    pub async fn open_uploads(&self) -> Result<Vec<OpenUpload>, BlobError> {
        let inner = &self.inner;
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .prefix(inner.keys.prefix())
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| inner.failed("listing uploads in", inner.keys.prefix(), e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) {
                    found.push(OpenUpload {
                        key: key.to_owned(),
                        upload_id: upload_id.to_owned(),
                        initiated: upload.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(found);
            }
        }
    }

    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), BlobError> {
        let inner = &self.inner;
        inner
            .client
            .abort_multipart_upload()
            .bucket(&inner.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| inner.failed("aborting the upload of", &upload.key, e))?;
        Ok(())
    }

    /// Objects under `{prefix}tmp/` (health probes a killed process left), with their age.
    pub async fn temporary_objects(&self) -> Result<Vec<(String, Option<SystemTime>)>, BlobError> {
        let inner = &self.inner;
        let mut pages = inner
            .client
            .list_objects_v2()
            .bucket(&inner.bucket)
            .prefix(inner.keys.temporary())
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| inner.failed("listing", &inner.keys.temporary(), e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push((
                        key.to_owned(),
                        object.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
                    ));
                }
            }
        }
        Ok(found)
    }

    /// Deletes an object by its full key (temporary objects only; blobs go through `delete`).
    pub async fn delete_temporary(&self, key: &str) -> Result<(), BlobError> {
        if !key.starts_with(&self.inner.keys.temporary()) {
            return Err(BlobError::Remote(format!(
                "refusing to delete {key}: not a temporary object"
            )));
        }
        self.inner.delete_key(key).await
    }
}
