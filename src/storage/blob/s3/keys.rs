//! Where things live in the bucket, under the configured prefix: blobs at
//! `{prefix}sha256/ab/cd/<sha256>` (the local layout's keys), quarantined blobs at
//! `{prefix}quarantine/<sha256>`, health probes under `{prefix}tmp/`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::storage::blob::{BlobError, validate_key};

/// The key layout under one prefix.
pub(super) struct Keys {
    /// Empty, or ending in `/`.
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` as configured: slashes around it do not matter.
    pub(super) fn new(prefix: &str) -> Self {
        let mut prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Self { prefix }
    }

    /// Empty, or ending in `/`.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The blob `sha256`'s key; anything but a sha256 is refused before it can name a key.
    pub(super) fn blob(&self, sha256: &str) -> Result<String, BlobError> {
        validate_key(sha256)?;
        Ok(format!(
            "{}sha256/{}/{}/{sha256}",
            self.prefix,
            &sha256[..2],
            &sha256[2..4]
        ))
    }

    /// What every blob's key starts with.
    pub(super) fn blobs(&self) -> String {
        format!("{}sha256/", self.prefix)
    }

    /// The sha256 of the blob at `key`, if `key` is exactly where [`Keys::blob`] puts one: other
    /// objects under `sha256/` are not blobs, as `get` would never find them.
    pub(super) fn sha256_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let sha256 = key.strip_prefix(&self.blobs())?.rsplit('/').next()?;
        self.blob(sha256)
            .is_ok_and(|expected| expected == key)
            .then_some(sha256)
    }

    /// Where `quarantine` moves the blob `sha256`.
    pub(super) fn quarantine(&self, sha256: &str) -> String {
        format!("{}quarantine/{sha256}", self.prefix)
    }

    /// What every temporary object's key (a health probe's) starts with.
    pub(super) fn temporary(&self) -> String {
        format!("{}tmp/", self.prefix)
    }
}

/// CopyObject's source, `bucket/key`, URL-encoded as S3 wants it (a prefix may hold any character).
pub(super) fn copy_source(bucket: &str, key: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(&format!("{bucket}/{key}"), KEEP).to_string()
}
