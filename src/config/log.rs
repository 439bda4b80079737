//! `[log]`: the output format and the tracing filter.

use std::num::NonZeroU64;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` replaces it when set.
    pub level: String,
    /// One access-log line per this many successful cache hits (1: every one); misses, stale
    /// answers and errors are always logged.
    pub access_hit_sample: NonZeroU64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            access_hit_sample: NonZeroU64::MIN,
        }
    }
}

impl LogConfig {
    /// The tracing filter for `level`; loading has already checked it, the
    /// `Result` is for configs built by hand.
    pub fn filter(&self) -> Result<EnvFilter, String> {
        if self.level.trim().is_empty() {
            return Err("empty filter (expected e.g. \"info\" or \"pkgmirror=debug,warn\")".into());
        }
        EnvFilter::try_new(&self.level).map_err(|e| format!("invalid filter {:?}: {e}", self.level))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown format {value:?} (expected text or json)")),
        }
    }
}
