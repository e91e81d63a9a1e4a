//! Step Functions: [`SfnExecutions`] for `spotfit submit` and `spotfit cancel` (start, follow,
//! stop an execution), and [`SfnCallback`], the callback half of the Await task's
//! `.waitForTaskToken` for the handlers that complete it.

use crate::errors::store_error;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use spotfit_core::ports::{Delivery, ExecutionStarter, Started, StoreError, TaskCallback};

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

    /// One `StartExecution` of `state_machine_arn` under `name` with `input`: the call both
    /// starts below make, each reading its errors its own way.
    async fn send_start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<
        aws_sdk_sfn::operation::start_execution::StartExecutionOutput,
        aws_sdk_sfn::error::SdkError<aws_sdk_sfn::operation::start_execution::StartExecutionError>,
    > {
        self.client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
    }

    /// Starts `state_machine_arn` with `input` (the job spec JSON) under `name` (the run id:
    /// Step Functions refuses a second execution of the same name, which makes submit idempotent).
    pub async fn start(&self, state_machine_arn: &str, name: &str, input: &str) -> Result<String, StoreError> {
        let out = self
            .send_start(state_machine_arn, name, input)
            .await
            .map_err(|e| store_error("states", e))?;
        Ok(out.execution_arn().to_string())
    }

    /// Starts `name` unless it exists: the same name and input while it runs is that execution
    /// again (Step Functions' answer), anything else `ExecutionAlreadyExists` → `AlreadyExists`.
    pub async fn start_once(&self, state_machine_arn: &str, name: &str, input: &str) -> Result<Started, StoreError> {
        match self.send_start(state_machine_arn, name, input).await {
            Ok(out) => Ok(Started::Running {
                execution_arn: out.execution_arn().to_string(),
            }),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(Started::AlreadyExists),
            Err(e) => Err(store_error("states", e)),
        }
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

    /// Stops an execution (`spotfit cancel`): the execution ends ABORTED, and the stack's
    /// status-change rule terminates its instance and closes its run row.
    pub async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), StoreError> {
        self.client
            .stop_execution()
            .execution_arn(execution_arn)
            .error("spotfit.Cancelled")
            .cause(cause)
            .send()
            .await
            .map_err(|e| store_error("states", e))?;
        Ok(())
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

/// [`ExecutionStarter`] on one state machine (the scheduled-run Lambda's port).
#[derive(Debug, Clone)]
pub struct SfnStarter {
    executions: SfnExecutions,
    state_machine_arn: String,
}

impl SfnStarter {
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: &str) -> Self {
        Self {
            executions: SfnExecutions::new(client),
            state_machine_arn: state_machine_arn.to_string(),
        }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, state_machine_arn: &str) -> Self {
        Self::new(aws_sdk_sfn::Client::new(sdk), state_machine_arn)
    }
}

#[async_trait::async_trait]
impl ExecutionStarter for SfnStarter {
    async fn start(&self, name: &str, input: &serde_json::Value) -> Result<Started, StoreError> {
        self.executions
            .start_once(&self.state_machine_arn, name, &input.to_string())
            .await
    }
}

/// The error codes of a callback whose task no longer waits. Step Functions answers
/// `TaskTimedOut` for a token whose task ended (completed, timed out, or its execution
/// stopped), `TaskDoesNotExist` for one it does not know, and `InvalidToken` for one that is
/// not a token at all.
pub const TASK_GONE_CODES: &[&str] = &["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"];

/// [`TaskCallback`] on `SendTaskSuccess` / `SendTaskHeartbeat`.
#[derive(Debug, Clone)]
pub struct SfnCallback {
    client: aws_sdk_sfn::Client,
}

impl SfnCallback {
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }
    /// From the shared SDK config (the endpoint from `AWS_ENDPOINT_URL_SFN` when set).
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_sfn::Client::new(sdk))
    }
}

fn delivery<E, R>(
    res: Result<
        E,
        aws_sdk_sfn::error::SdkError<impl ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R>,
    >,
) -> Result<Delivery, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match res {
        Ok(_) => Ok(Delivery::Accepted),
        Err(e) if e.code().is_some_and(|c| TASK_GONE_CODES.contains(&c)) => Ok(Delivery::Gone),
        Err(e) => Err(store_error("states", e)),
    }
}

#[async_trait::async_trait]
impl TaskCallback for SfnCallback {
    #[tracing::instrument(skip_all, err)]
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<Delivery, StoreError> {
        let res = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await;
        delivery(res)
    }

    #[tracing::instrument(skip_all, err)]
    async fn heartbeat(&self, token: &str) -> Result<Delivery, StoreError> {
        let res = self.client.send_task_heartbeat().task_token(token).send().await;
        delivery(res)
    }
}
