//! The local DynamoDB API (the emulator) the tests run against; missing, a test fails and
//! says how to start one.

/// `STREAMGUARD_TEST_DYNAMODB_ENDPOINT`, or a panic naming the command.
pub fn endpoint() -> String {
    std::env::var("STREAMGUARD_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "STREAMGUARD_TEST_DYNAMODB_ENDPOINT is not set. The DynamoDB tests need a local \
             DynamoDB API: run them with scripts/test, which starts one, or start it yourself with \
             `pip install \"moto[server]\" && python3 scripts/dynamodb-emulator.py --port 8000` \
             and export STREAMGUARD_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:8000"
        )
    })
}

/// An SDK configuration for the emulator: its endpoint, a fixed region and
/// static credentials.
#[cfg(feature = "dynamodb")]
#[allow(dead_code)] // the Lambda tests only need the endpoint
pub async fn config() -> aws_config::SdkConfig {
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "streamguard-tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(credentials)
        .load()
        .await
}
