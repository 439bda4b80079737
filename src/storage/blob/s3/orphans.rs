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
        let objects = self.inner.objects_under(&self.inner.keys.temporary()).await?;
        Ok(objects
            .iter()
            .filter_map(|object| {
                let modified = object.last_modified().and_then(|t| SystemTime::try_from(*t).ok());
                Some((object.key()?.to_owned(), modified))
            })
            .collect())
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

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, unreachable_store};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_uploads_are_those_under_the_prefix_and_abort_ends_them() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let client = f.moto.client();
        for key in ["mirror/sha256/ab/cd/left-behind", "elsewhere/sha256/ab/cd/other"] {
            client
                .create_multipart_upload()
                .bucket(&f.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        }
        let open = f.store.open_uploads().await.unwrap();
        let [upload] = open.as_slice() else {
            panic!("open uploads under the prefix: {open:?}");
        };
        assert_eq!(upload.key, "mirror/sha256/ab/cd/left-behind");
        // moto answers one fixed date for every upload, so only that there is one is checked.
        assert!(upload.initiated.is_some());

        f.store.abort_upload(upload).await.unwrap();
        assert!(f.store.open_uploads().await.unwrap().is_empty());
        let left: Vec<String> = f.open_uploads().await.into_iter().map(|(key, _)| key).collect();
        assert_eq!(left, ["elsewhere/sha256/ab/cd/other"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_temporary_objects_are_listed_and_deleted_as_such() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let blob = f.put_blob(b"a blob").await;
        let blob_key = f.store.inner.keys.blob(&blob).unwrap();
        f.put_object("mirror/tmp/probe-1", b"probe").await;
        f.put_object("elsewhere/tmp/probe-2", b"probe").await;

        let found = f.store.temporary_objects().await.unwrap();
        let [(key, modified)] = found.as_slice() else {
            panic!("temporary objects: {found:?}");
        };
        assert_eq!(key, "mirror/tmp/probe-1");
        assert!(modified.is_some());

        let err = f.store.delete_temporary(&blob_key).await.unwrap_err();
        assert!(matches!(err, BlobError::Remote(_)), "{err:?}");
        f.store.delete_temporary(key).await.unwrap();
        assert_eq!(f.keys().await, ["elsewhere/tmp/probe-2".to_owned(), blob_key]);
    }

    #[tokio::test]
    async fn a_blob_is_never_deleted_as_temporary() {
        // Refused before any request: the bucket need not even be reachable.
        let dir = tempfile::tempdir().unwrap();
        let store = unreachable_store(dir.path()).await;
        let blob_key = store.inner.keys.blob(&"ab".repeat(32)).unwrap();
        for key in [
            blob_key.as_str(),
            "tmp/x",
            "mirror/tmpx",
            "elsewhere/mirror/tmp/x",
        ] {
            let err = store.delete_temporary(key).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("refusing to delete {key}: not a temporary object")
            );
        }
        store.inner.check().unwrap();
    }
}
