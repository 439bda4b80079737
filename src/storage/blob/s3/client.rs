//! The AWS SDK client for the configured bucket: credentials from the SDK's standard chain,
//! settings that suit S3-compatible servers, and timeouts that let an unreachable bucket fail
//! fast.

use std::time::Duration;

use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};

use crate::config::S3Config;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK's shared settings with the configured region and endpoint; the rest (credentials
/// above all: the `AWS_*` variables, profiles, instance roles) come from the SDK's defaults.
pub(super) fn loader(config: &S3Config) -> ConfigLoader {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region.clone()));
    if !config.endpoint.is_empty() {
        loader = loader.endpoint_url(&config.endpoint);
    }
    loader
}

/// The client on `shared` settings, as pkgmirror needs it.
pub(super) fn build(shared: &SdkConfig, config: &S3Config) -> Client {
    let s3_config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(config.path_style)
        // Checksums only where the API needs them: S3-compatible servers differ in which of
        // the newer checksum headers they know, and pkgmirror checks sha256 itself.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // A download to a slow client pauses reading on purpose; that is not a stall.
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .download_enabled(false)
                .build(),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .build();
    Client::from_conf(s3_config)
}
