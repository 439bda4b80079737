//! The AWS SDK client for the configured bucket: credentials from the SDK's standard chain,
//! settings that suit S3-compatible servers, and timeouts that let an unreachable bucket fail
//! fast.

use std::time::Duration;

use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Intercept, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    RuntimeComponents, StalledStreamProtectionConfig,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

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
        .interceptor(CountOperations)
        .build();
    Client::from_conf(s3_config)
}

/// Counts every S3 operation, once its retries are done, in the metrics.
#[derive(Debug)]
struct CountOperations;

impl Intercept for CountOperations {
    fn name(&self) -> &'static str {
        "pkgmirror-metrics"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let ok = matches!(context.output_or_error(), Some(Ok(_)));
        crate::metrics::METRICS.s3_operation(operation, ok);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::Credentials;

    use super::*;

    #[tokio::test]
    async fn the_client_fails_fast_and_leaves_checksums_to_pkgmirror() {
        let config = S3Config {
            endpoint: "http://127.0.0.1:9".to_owned(),
            region: "eu-west-3".to_owned(),
            ..S3Config::default()
        };
        let credentials = Credentials::new("test", "test", None, None, "pkgmirror-unit-tests");
        let shared = loader(&config).credentials_provider(credentials).load().await;
        assert_eq!(shared.endpoint_url(), Some("http://127.0.0.1:9"));
        let client = build(&shared, &config);
        let built = client.config();
        assert_eq!(built.region().map(Region::as_ref), Some("eu-west-3"));
        assert_eq!(built.retry_config().map(RetryConfig::max_attempts), Some(2));
        let timeouts = built.timeout_config().unwrap();
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(timeouts.read_timeout(), Some(READ_TIMEOUT));
        assert_eq!(
            built.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(
            built.response_checksum_validation(),
            Some(&ResponseChecksumValidation::WhenRequired)
        );
        let stalls = built.stalled_stream_protection().unwrap();
        assert!(stalls.upload_enabled() && !stalls.download_enabled());
    }
}
