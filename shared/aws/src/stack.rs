//! A deployed spotfit stack found by name: CloudFormation's `DescribeStacks`, read for the
//! outputs the CDK stack declares (infra/lib/spotfit-stack.ts), so the CLI's `--stack NAME`
//! needs no bucket, table or ARN typed in. The output keys are a contract with the stack:
//! `infra/stack-outputs.json`, written by this crate's tests and checked against the
//! synthesized template by infra/test/contract.test.ts. Behind the `stack` feature: only the
//! CLI carries the CloudFormation SDK.

use crate::errors::store_error;
use serde::Serialize;
use spotfit_core::ports::StoreError;

/// The outputs read, by key: (key, what it is).
pub const OUTPUTS: [(&str, &str); 5] = [
    ("BucketName", "the bucket of samples, logs, summaries and records"),
    ("RunsTable", "the DynamoDB runs table"),
    ("ProfilesTable", "the DynamoDB profiles table"),
    ("WaitsTable", "the DynamoDB table of attempts waiting on a task token"),
    ("StateMachineArn", "the pipeline's state machine"),
];

/// What the CLI reads a deployment through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackOutputs {
    pub stack: String,
    pub bucket: String,
    pub runs_table: String,
    pub profiles_table: String,
    pub waits_table: String,
    pub state_machine_arn: String,
}

impl StackOutputs {
    /// From the stack's `(OutputKey, OutputValue)` pairs; a missing one is named.
    pub fn from_outputs<'a>(
        stack: &str,
        outputs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, StoreError> {
        let outputs: Vec<(&str, &str)> = outputs.into_iter().collect();
        let get = |key: &str| -> Result<String, StoreError> {
            outputs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    let what = OUTPUTS.iter().find(|(k, _)| *k == key).map_or("", |(_, w)| w);
                    StoreError::Missing(format!(
                        "stack {stack} has no output {key} ({what}): is it a spotfit stack, deployed from this version?"
                    ))
                })
        };
        Ok(StackOutputs {
            stack: stack.to_string(),
            bucket: get("BucketName")?,
            runs_table: get("RunsTable")?,
            profiles_table: get("ProfilesTable")?,
            waits_table: get("WaitsTable")?,
            state_machine_arn: get("StateMachineArn")?,
        })
    }

    /// Reads the stack `name` (its outputs) in the config's region.
    pub async fn describe(sdk: &aws_config::SdkConfig, name: &str) -> Result<Self, StoreError> {
        let cfn = aws_sdk_cloudformation::Client::new(sdk);
        let out = match cfn.describe_stacks().stack_name(name).send().await {
            Ok(o) => o,
            Err(e) => {
                let err = store_error("cloudformation", e);
                // CloudFormation answers a missing stack with ValidationError "does not exist".
                if let StoreError::Other { message, .. } = &err {
                    if message.contains("does not exist") {
                        let region = sdk
                            .region()
                            .map_or("the configured region".to_string(), |r| r.to_string());
                        return Err(StoreError::Missing(format!("no stack {name} in {region}")));
                    }
                }
                return Err(err);
            }
        };
        let stack = out
            .stacks()
            .first()
            .ok_or_else(|| StoreError::Missing(format!("no stack {name}")))?;
        StackOutputs::from_outputs(
            name,
            stack
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?, o.output_value()?))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_read_by_key_and_a_missing_one_is_named() {
        let all = [
            ("BucketName", "b"),
            ("RunsTable", "r"),
            ("ProfilesTable", "p"),
            ("WaitsTable", "w"),
            ("StateMachineArn", "arn:sm"),
            ("AgentKey", "agent/spotfit"),
        ];
        let o = StackOutputs::from_outputs("s", all).unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.runs_table.as_str(), o.state_machine_arn.as_str()),
            ("b", "r", "arn:sm")
        );
        let err = StackOutputs::from_outputs("s", all.into_iter().filter(|(k, _)| *k != "RunsTable")).unwrap_err();
        assert!(err.to_string().contains("no output RunsTable"), "{err}");
    }

    /// The contract with the CDK stack: the keys read here, in `infra/stack-outputs.json`
    /// (`SPOTFIT_BLESS=1` rewrites it); infra/test/contract.test.ts fails when the stack stops
    /// declaring one of them.
    #[test]
    fn the_output_keys_are_the_contract_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/stack-outputs.json");
        let want = serde_json::to_string_pretty(&serde_json::json!({
            "_comment": "Written by shared/aws/src/stack.rs (SPOTFIT_BLESS=1): the stack outputs `spotfit --stack NAME` reads. infra/test/contract.test.ts checks the stack declares each.",
            "outputs": OUTPUTS.iter().map(|(k, w)| serde_json::json!({"key": k, "what": w})).collect::<Vec<_>>(),
        }))
        .unwrap()
            + "\n";
        if std::env::var_os("SPOTFIT_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(have, want, "{} is stale (run with SPOTFIT_BLESS=1)", path.display());
    }
}
