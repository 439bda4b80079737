//! `[storage]` and `[storage.s3]`: the data directory, the size limits and
//! the blob backend with its S3 bucket.

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::{GIB, MIB, has_credentials, parse_http_url, redact_raw_url, size};

/// S3's limits on a multipart part.
pub(super) const MIN_PART_SIZE: u64 = 5 * MIB;
pub(super) const MAX_PART_SIZE: u64 = 5 * GIB;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub backend: StorageBackend,
    /// Bytes.
    #[serde(deserialize_with = "size")]
    pub max_size: u64,
    /// Bytes of the in-memory cache of rendered index pages.
    #[serde(deserialize_with = "size")]
    pub page_cache_size: u64,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./pkgmirror-data"),
            backend: StorageBackend::Local,
            max_size: 20 * GIB,
            page_cache_size: 256 * MIB,
            s3: S3Config::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    /// Empty: the provider's default endpoint. Never holds credentials.
    #[serde(deserialize_with = "s3_endpoint")]
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    /// Bytes per multipart upload part.
    #[serde(deserialize_with = "size")]
    pub part_size: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            path_style: false,
            part_size: 16 * MIB,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StorageBackend {
    Local,
    S3,
    Tiered,
}

impl StorageBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
            Self::Tiered => "tiered",
        }
    }
}

impl TryFrom<String> for StorageBackend {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "s3" => Ok(Self::S3),
            "tiered" => Ok(Self::Tiered),
            _ => Err(format!(
                "unknown backend {value:?} (expected local, s3 or tiered)"
            )),
        }
    }
}

/// Empty string: the provider's default. S3 credentials do not belong in
/// the endpoint, where they would show in logs.
fn s3_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    let url = parse_http_url(&s).map_err(de::Error::custom)?;
    if has_credentials(&url) {
        return Err(de::Error::custom(format!(
            "must not contain credentials ({:?})",
            redact_raw_url(&s)
        )));
    }
    Ok(s.trim().to_owned())
}
