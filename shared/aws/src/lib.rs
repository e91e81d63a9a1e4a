//! spotfit-aws: adapters implementing the spotfit-core ports on the AWS SDK. Every SDK error
//! is classified in [`errors`] by its AWS error code, never flattened to a string.
//! Endpoints are overridable (`AWS_ENDPOINT_URL`, or per client) for the local emulator.

pub mod config;
pub mod dynamo;
pub mod ec2;
pub mod errors;
pub mod prices;
#[cfg(feature = "pricing")]
pub mod pricing;
pub mod s3;
pub mod sfn;
#[cfg(feature = "stack")]
pub mod stack;
pub mod user_data;

/// The shared SDK configuration [`load_sdk_config`] gives, for callers that keep it.
pub use aws_config::SdkConfig;
pub use config::{ConfigError, LaunchConfig, ReapConfig, StoreConfig};
pub use dynamo::{DynamoCapacityStore, DynamoProfileStore, DynamoRunStore, DynamoWaitStore};
pub use ec2::Ec2Launcher;
pub use prices::Ec2SpotPrices;
pub use s3::S3ObjectStore;
pub use sfn::{SfnCallback, SfnExecutions, SfnStarter};

/// Loads the shared SDK config from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
