//! Step Functions client for `spotfit submit`: start an execution of the pipeline, follow it.

use crate::errors::store_error;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use spotfit_core::ports::StoreError;

/// An execution as `spotfit submit --wait` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionView {
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE.
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl ExecutionView {
    pub fn is_running(&self) -> bool {
        self.status == ExecutionStatus::Running.as_str()
    }
}

/// Thin wrapper over the SDK client, errors classified like every store's.
#[derive(Debug, Clone)]
pub struct SfnExecutions {
    client: aws_sdk_sfn::Client,
}

impl SfnExecutions {
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }

    /// Starts `state_machine_arn` with `input` (the job spec JSON) under `name` (the run id:
    /// Step Functions refuses a second execution of the same name, which makes submit idempotent).
    pub async fn start(&self, state_machine_arn: &str, name: &str, input: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
            .map_err(|e| store_error("states", e))?;
        Ok(out.execution_arn().to_string())
    }

    pub async fn describe(&self, execution_arn: &str) -> Result<ExecutionView, StoreError> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| store_error("states", e))?;
        Ok(ExecutionView {
            status: out.status().as_str().to_string(),
            output: out.output().map(str::to_string),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
        })
    }

    /// Names of the states entered so far, oldest first (for progress lines).
    pub async fn states_entered(&self, execution_arn: &str) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            for ev in page.map_err(|e| store_error("states", e))?.events() {
                let entered = matches!(
                    ev.r#type(),
                    HistoryEventType::TaskStateEntered
                        | HistoryEventType::WaitStateEntered
                        | HistoryEventType::ChoiceStateEntered
                        | HistoryEventType::PassStateEntered
                        | HistoryEventType::SucceedStateEntered
                        | HistoryEventType::FailStateEntered
                );
                if let Some(name) = ev.state_entered_event_details().map(|d| d.name()).filter(|_| entered) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }
}
