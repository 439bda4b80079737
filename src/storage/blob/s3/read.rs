//! Reading objects: a blob's bytes as a stream, whole or a range of them, and an object's size.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream as S3Body;

use super::Inner;
use crate::storage::blob::{BlobBody, BlobError, ByteRange, ByteStream};

impl Inner {
    /// The object at `key`, whole or the `range` of it, with the whole object's size; `None` if
    /// there is no such object.
    pub(super) async fn read(
        &self,
        key: String,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobBody>, BlobError> {
        self.check()?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
        if let Some(range) = range {
            request = request.range(range_header(range));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
                self.succeeded();
                return Ok(None);
            }
            Err(e) => return Err(self.failed("reading", &key, e)),
        };
        self.succeeded();
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let size = match (range, out.content_range()) {
            (Some(_), Some(content_range)) => total_of(content_range).ok_or_else(|| {
                BlobError::Remote(format!(
                    "reading {key}: unexpected Content-Range {content_range:?}"
                ))
            })?,
            _ => length,
        };
        Ok(Some(BlobBody::Stream {
            size,
            range,
            stream: body_stream(out.body, key),
        }))
    }

    /// The size of the object at `key`, if there is one.
    pub(super) async fn head_key(&self, key: &str) -> Result<Option<u64>, BlobError> {
        self.check()?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                self.succeeded();
                Ok(Some(out.content_length().unwrap_or(0).max(0) as u64))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => {
                self.succeeded();
                Ok(None)
            }
            Err(e) => Err(self.failed("reading", key, e)),
        }
    }
}

/// The `Range` header that asks for `range`.
fn range_header(range: ByteRange) -> String {
    format!("bytes={}-{}", range.start, range.end)
}

/// `bytes 0-99/1234` → 1234.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

fn body_stream(body: S3Body, key: String) -> ByteStream {
    Box::pin(futures::stream::unfold(
        (body, key),
        |(mut body, key)| async move {
            match body.next().await {
                Some(Ok(bytes)) => Some((Ok(bytes), (body, key))),
                Some(Err(e)) => Some((
                    Err(BlobError::Unavailable(format!(
                        "reading {key}: the S3 connection broke: {e}"
                    ))),
                    (body, key),
                )),
                None => None,
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, read_body, some_bytes};
    use super::*;

    #[test]
    fn a_range_is_asked_for_inclusively() {
        assert_eq!(range_header(ByteRange { start: 0, end: 0 }), "bytes=0-0");
        assert_eq!(range_header(ByteRange { start: 10, end: 1999 }), "bytes=10-1999");
    }

    #[test]
    fn the_whole_size_comes_from_content_range() {
        assert_eq!(total_of("bytes 0-99/1234"), Some(1234));
        assert_eq!(total_of("bytes 5-5/6"), Some(6));
        assert_eq!(total_of("bytes */1234"), Some(1234));
        for unknown in ["bytes 0-99/*", "bytes 0-99", "", "bytes 0-99/-1"] {
            assert_eq!(total_of(unknown), None, "{unknown:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_read_the_bytes_asked_for_and_report_the_whole_size() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let data = some_bytes(100_000, 1);
        let key = f.store.inner.keys.blob(&f.put_blob(&data).await).unwrap();
        let inner = &f.store.inner;

        let (size, range, bytes) = read_body(inner.read(key.clone(), None).await.unwrap().unwrap()).await;
        assert_eq!((size, range), (100_000, None));
        assert!(bytes == data, "the whole body differs");
        for (start, end) in [(0, 0), (10, 1999), (99_999, 99_999), (0, 99_999)] {
            let wanted = Some(ByteRange { start, end });
            let body = inner.read(key.clone(), wanted).await.unwrap().unwrap();
            let (size, range, bytes) = read_body(body).await;
            assert_eq!((size, range), (100_000, wanted));
            assert!(
                bytes == data[start as usize..=end as usize],
                "{start}-{end} differs"
            );
        }
        assert_eq!(inner.head_key(&key).await.unwrap(), Some(100_000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_key_is_none_not_an_error() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let inner = &f.store.inner;
        let key = inner.keys.blob(&"ab".repeat(32)).unwrap();
        assert!(inner.read(key.clone(), None).await.unwrap().is_none());
        let range = Some(ByteRange { start: 0, end: 9 });
        assert!(inner.read(key.clone(), range).await.unwrap().is_none());
        assert_eq!(inner.head_key(&key).await.unwrap(), None);
        // S3 answered: the bucket is reachable.
        inner.check().unwrap();
    }
}
