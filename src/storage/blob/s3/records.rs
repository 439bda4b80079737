//! Records in the bucket, at `{prefix}records/<key>`: the version is the object's ETag, a create
//! is `PutObject` with `If-None-Match: *` and a replacement `PutObject` with `If-Match: <etag>`
//! (S3's conditional writes; MinIO, R2 and moto have them too). A precondition that fails (412),
//! or a conditional write racing another on the same key (409), is a lost race, not an error.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as S3Body;

use super::S3BlobStore;
use crate::storage::blob::BlobError;
use crate::storage::records::{Expect, MAX_RECORD_BYTES, Record, RecordKey, RecordStore};

impl S3BlobStore {
    fn record_key(&self, key: &RecordKey) -> String {
        format!("{}records/{}", self.inner.keys.prefix(), key.as_str())
    }
}

#[async_trait::async_trait]
impl RecordStore for S3BlobStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, BlobError> {
        let inner = &self.inner;
        let object = self.record_key(key);
        inner.check()?;
        let out = match inner
            .client
            .get_object()
            .bucket(&inner.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
                inner.succeeded();
                return Ok(None);
            }
            Err(e) => return Err(inner.failed("reading", &object, e)),
        };
        inner.succeeded();
        let version = out
            .e_tag()
            .ok_or_else(|| BlobError::Remote(format!("reading {object}: the answer has no ETag")))?
            .to_owned();
        let mut body = Vec::new();
        let mut stream = out.body;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Unavailable(format!("reading {object}: {e}")))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_RECORD_BYTES {
                return Err(BlobError::Remote(format!(
                    "{object} is over {MAX_RECORD_BYTES} bytes"
                )));
            }
        }
        Ok(Some(Record { body, version }))
    }

    async fn put(&self, key: &RecordKey, body: &[u8], expect: Expect) -> Result<bool, BlobError> {
        let inner = &self.inner;
        let object = self.record_key(key);
        inner.check()?;
        let request = inner
            .client
            .put_object()
            .bucket(&inner.bucket)
            .key(&object)
            .content_type("application/json")
            .body(S3Body::from(body.to_vec()));
        let request = match expect {
            Expect::Absent => request.if_none_match("*"),
            Expect::Version(version) => request.if_match(version),
        };
        match request.send().await {
            Ok(_) => {
                inner.succeeded();
                Ok(true)
            }
            Err(SdkError::ServiceError(e))
                if matches!(e.raw().status().as_u16(), 409 | 412)
                    || matches!(
                        e.err().code(),
                        Some("PreconditionFailed" | "ConditionalRequestConflict" | "NoSuchKey")
                    ) =>
            {
                inner.succeeded();
                Ok(false)
            }
            Err(e) => Err(inner.failed("writing", &object, e)),
        }
    }

    async fn list(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, BlobError> {
        let root = format!("{}/", self.record_key(prefix));
        let objects = self.inner.objects_under(&root).await?;
        // Only keys a record could have: anything else in the bucket is not ours.
        let mut keys: Vec<RecordKey> = objects
            .iter()
            .filter_map(|object| RecordKey::under(prefix, object.key()?.strip_prefix(&root)?))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use crate::storage::records::behaves_as_a_record_store;

    #[tokio::test]
    async fn a_bucket_is_a_record_store_with_conditional_writes() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        behaves_as_a_record_store(&f.store).await;
        // Records live under the prefix's records/, apart from blobs.
        assert!(f.object("mirror/records/tokens/abc").await.is_some());
    }
}
