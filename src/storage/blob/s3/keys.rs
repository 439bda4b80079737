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

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn prefix_is_empty_or_ends_in_one_slash() {
        for (configured, prefix) in [
            ("", ""),
            ("/", ""),
            ("//", ""),
            ("mirror", "mirror/"),
            ("/mirror/blobs/", "mirror/blobs/"),
            ("mirror//", "mirror/"),
        ] {
            assert_eq!(Keys::new(configured).prefix(), prefix, "{configured:?}");
        }
    }

    #[test]
    fn blobs_use_the_local_layout_under_the_prefix() {
        let keys = Keys::new("/mirror/blobs/");
        assert_eq!(
            keys.blob(SHA).unwrap(),
            format!("mirror/blobs/sha256/01/23/{SHA}")
        );
        assert_eq!(keys.blobs(), "mirror/blobs/sha256/");
        assert_eq!(keys.quarantine(SHA), format!("mirror/blobs/quarantine/{SHA}"));
        assert_eq!(keys.temporary(), "mirror/blobs/tmp/");
        assert_eq!(Keys::new("").blob(SHA).unwrap(), format!("sha256/01/23/{SHA}"));
        for bad in ["../../etc/passwd", "", &SHA.to_uppercase(), &SHA[1..]] {
            assert!(
                matches!(keys.blob(bad), Err(BlobError::InvalidKey(_))),
                "{bad:?} named a key"
            );
        }
    }

    #[test]
    fn only_a_blobs_own_key_names_a_blob() {
        let keys = Keys::new("mirror");
        let key = keys.blob(SHA).unwrap();
        assert_eq!(keys.sha256_of(&key), Some(SHA));
        for other in [
            // The wrong directories for this sha256.
            format!("mirror/sha256/ff/23/{SHA}"),
            format!("mirror/sha256/{SHA}"),
            format!("mirror/sha256/x/01/23/{SHA}"),
            // Not a sha256, or not under this prefix.
            format!("mirror/sha256/01/23/{SHA}.part"),
            "mirror/sha256/readme.txt".to_owned(),
            "mirror/sha256/".to_owned(),
            format!("sha256/01/23/{SHA}"),
            format!("other/sha256/01/23/{SHA}"),
            keys.quarantine(SHA),
        ] {
            assert_eq!(keys.sha256_of(&other), None, "{other}");
        }
    }

    #[test]
    fn copy_source_encodes_all_but_unreserved_characters_and_slashes() {
        assert_eq!(
            copy_source("bucket.name", "pypi cache+%41é/sha256/ab/cd/x-y_z.~"),
            "bucket.name/pypi%20cache%2B%2541%C3%A9/sha256/ab/cd/x-y_z.~"
        );
    }
}
