//! EC2 launcher: one instance per run attempt, from the deployment's launch template, in the
//! subnet of the pool's AZ, spot or on-demand, IMDSv2 required, tagged as spotfit-managed,
//! with the user data rendered from `scripts/user-data.sh.tpl`. Errors are classified in
//! [`crate::errors`].

use crate::config::LaunchConfig;
use crate::errors::{ec2_error, launch_error, NOT_FOUND_CODES};
use crate::user_data::{self, UserDataInput};
use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification, Instance,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType,
    LaunchTemplateSpecification, MarketType, ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification, VolumeType,
};
use base64::Engine;
use spotfit_core::ids::{InstanceId, Pool};
use spotfit_core::ports::{
    InstanceEnd, InstanceInfo, InstanceLauncher, InstanceState, LaunchError, LaunchRequest, LaunchedInstance,
};
use spotfit_core::spec::Market;

pub const TAG_MANAGED: &str = "spotfit:managed";
pub const TAG_JOB: &str = "spotfit:job";
pub const TAG_RUN_ID: &str = "spotfit:run-id";
pub const TAG_ATTEMPT: &str = "spotfit:attempt";
/// RFC 3339 UTC; after it the reaper terminates the instance whatever its run says.
pub const TAG_DEADLINE: &str = "spotfit:deadline";
/// The pool's AZ id as launched (DescribeInstances gives the AZ name).
pub const TAG_AZ_ID: &str = "spotfit:az-id";

/// [`InstanceLauncher`] on EC2.
#[derive(Debug, Clone)]
pub struct Ec2Launcher {
    client: aws_sdk_ec2::Client,
    cfg: LaunchConfig,
}

impl Ec2Launcher {
    pub fn new(client: aws_sdk_ec2::Client, cfg: LaunchConfig) -> Self {
        Self { client, cfg }
    }

    /// Checks the configured subnets against EC2 (at cold start): each exists, is in the AZ id it
    /// is keyed by in `SPOTFIT_SUBNETS`, and all are in one VPC. A mismatch would launch jobs in
    /// another zone than ranked (or fail every launch), so it is refused with the subnet named.
    pub async fn verify_subnets(&self) -> Result<(), LaunchError> {
        let invalid = |message: String| LaunchError::Fatal {
            code: "InvalidSubnetConfig".into(),
            message: format!("{}: {message}", crate::config::SUBNETS),
        };
        let ids: Vec<String> = self.cfg.subnets.values().cloned().collect();
        let out = self
            .client
            .describe_subnets()
            .set_subnet_ids(Some(ids))
            .send()
            .await
            .map_err(|e| match ec2_error(e) {
                LaunchError::Fatal { code, message } => invalid(format!("{code}: {message}")),
                other => other,
            })?;
        let mut vpcs = std::collections::BTreeSet::new();
        for (az_id, id) in &self.cfg.subnets {
            let Some(sn) = out.subnets().iter().find(|s| s.subnet_id() == Some(id.as_str())) else {
                return Err(invalid(format!("{id} does not exist")));
            };
            let real = sn.availability_zone_id().unwrap_or_default();
            if real != az_id {
                return Err(invalid(format!("{id} is in {real}, not in {az_id} as configured")));
            }
            vpcs.insert(sn.vpc_id().unwrap_or_default().to_string());
        }
        if vpcs.len() > 1 {
            return Err(invalid(format!(
                "the subnets are in several VPCs ({vpcs:?}); the security group is in one"
            )));
        }
        Ok(())
    }

    /// A launcher for describe, terminate and list only (check, terminate, reap): it needs no
    /// launch configuration, and its `launch` fails (no subnet is configured).
    pub fn instances_only(client: aws_sdk_ec2::Client) -> Self {
        Self {
            client,
            cfg: LaunchConfig {
                launch_template_id: String::new(),
                subnets: Default::default(),
                instance_profile_arn: None,
                bucket: String::new(),
                agent_key: String::new(),
                region: String::new(),
                security_group_ids: Vec::new(),
                associate_public_ip: false,
                job_profiles: Default::default(),
                registry_hosts: Vec::new(),
            },
        }
    }

    fn tags(&self, req: &LaunchRequest) -> Vec<Tag> {
        let deadline = chrono::DateTime::from_timestamp_millis(req.deadline_ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        [
            (TAG_MANAGED, "true".to_string()),
            (TAG_JOB, req.job.clone()),
            (TAG_RUN_ID, req.run_id.clone()),
            (TAG_ATTEMPT, req.attempt.to_string()),
            (TAG_DEADLINE, deadline),
            (TAG_AZ_ID, req.pool.az.clone()),
            ("Name", format!("spotfit {} {}", req.job, req.agent_run_id)),
        ]
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
    }
}

/// IMDSv2's PUT response hop limit for a launch: 1 keeps a container job (one network hop
/// away, on the runtime's bridge) from the instance's credentials, which are the agent's; with a
/// job role they are the job's own, and its container gets the hop it needs to reach them.
fn imds_hop_limit(req: &LaunchRequest) -> i32 {
    if req.role.is_some() && req.image.is_some() {
        2
    } else {
        1
    }
}

fn state_of(name: Option<&InstanceStateName>) -> InstanceState {
    match name {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Stopping) | Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        // An unknown new state: treat as running so nothing is decided on it but the deadline.
        _ => InstanceState::Running,
    }
}

/// Our view of an EC2 instance, from its state and tags.
pub fn instance_info(i: &Instance) -> InstanceInfo {
    let tag = |k: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let az = tag(TAG_AZ_ID)
        .filter(|a| !a.is_empty())
        .or_else(|| {
            i.placement()
                .and_then(|p| p.availability_zone_id().or(p.availability_zone()))
                .map(str::to_string)
        })
        .unwrap_or_default();
    InstanceInfo {
        instance_id: InstanceId(i.instance_id().unwrap_or_default().to_string()),
        state: state_of(i.state().and_then(|s| s.name())),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        az,
        market: if i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot") {
            Market::Spot
        } else {
            Market::OnDemand
        },
        job: tag(TAG_JOB),
        run_id: tag(TAG_RUN_ID),
        attempt: tag(TAG_ATTEMPT).and_then(|a| a.parse().ok()),
        deadline_ms: tag(TAG_DEADLINE)
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d).ok())
            .map(|d| d.timestamp_millis()),
        launched_at_ms: i.launch_time().map(|t| t.to_millis().unwrap_or(0)),
        state_reason: i
            .state_reason()
            .and_then(|r| r.code().or(r.message()))
            .map(str::to_string),
        end: i.state_reason().and_then(|r| r.code()).map(InstanceEnd::of_ec2_code),
    }
}

/// Device name of the root volume on every image spotfit boots (Amazon Linux 2023 and the
/// ECS-optimized AL2023 images): overriding it resizes the root volume the launch template
/// describes (encrypted gp3, deleted on termination).
pub const ROOT_DEVICE: &str = "/dev/xvda";

/// The root volume mapping for `gib` GiB: as the launch template's, with the size the job needs.
fn root_volume(gib: u32) -> BlockDeviceMapping {
    BlockDeviceMapping::builder()
        .device_name(ROOT_DEVICE)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(gib.min(i32::MAX as u32) as i32)
                .volume_type(VolumeType::Gp3)
                .encrypted(true)
                .delete_on_termination(true)
                .build(),
        )
        .build()
}

#[async_trait]
impl InstanceLauncher for Ec2Launcher {
    #[tracing::instrument(skip(self, req), err, fields(pool = %req.pool, run_id = %req.run_id, attempt = req.attempt))]
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchedInstance, LaunchError> {
        let fatal = |code: &str, message: String| LaunchError::Fatal {
            code: code.into(),
            message,
        };
        let subnet = match self.cfg.subnets.get(&req.pool.az) {
            Some(s) => s.clone(),
            None => {
                return Err(fatal(
                    "NoSubnet",
                    format!("no subnet configured for AZ {:?}", req.pool.az),
                ))
            }
        };
        let agent_run_id = &req.agent_run_id;
        let script = user_data::render(&UserDataInput {
            bucket: &self.cfg.bucket,
            agent_key: &self.cfg.agent_key,
            region: &self.cfg.region,
            job: &req.job,
            run_id: agent_run_id,
            deadline_epoch_s: req.deadline_ms / 1000,
            argv: &req.argv,
            env: &req.env,
            env_from: &req.env_from,
            job_role: req.role.is_some(),
            image: req.image.as_deref(),
            memory_limit_bytes: req.memory_limit_bytes,
            gpus: req.gpus > 0,
            registry_hosts: &self.cfg.registry_hosts,
        })
        .map_err(|e| fatal("InvalidUserData", e.to_string()))?;

        let tags = self.tags(req);
        let mut call = self
            .client
            .run_instances()
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&self.cfg.launch_template_id)
                    .build(),
            )
            .instance_type(InstanceType::from(req.pool.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(&req.client_token)
            .user_data(base64::engine::general_purpose::STANDARD.encode(script))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // Only the host reaches IMDS, unless the instance runs with a job role
                    // (its rights are the job's): a container is one hop further away.
                    .http_put_response_hop_limit(imds_hop_limit(req))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        call = if self.cfg.security_group_ids.is_empty() {
            // The subnet decides about public IPs; the deployment's subnets do not assign them.
            call.subnet_id(subnet)
        } else {
            call.network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .set_groups(Some(self.cfg.security_group_ids.clone()))
                    .associate_public_ip_address(self.cfg.associate_public_ip)
                    .delete_on_termination(true)
                    .build(),
            )
        };
        // The image and disk size-job chose for this job on this type, over the launch
        // template's (which stay the defaults for requests that name none).
        if let Some(image_id) = &req.image_id {
            call = call.image_id(image_id);
        }
        if let Some(gib) = req.root_volume_gib {
            call = call.block_device_mappings(root_volume(gib));
        }
        // The job's role, if the spec names one, else the agent's: looked up in the allow-list,
        // so a spec can never pick an arbitrary role (and PassRole is granted on these only).
        let profile = match &req.role {
            Some(role) => Some(self.cfg.job_profiles.get(role).ok_or_else(|| {
                let known: Vec<&str> = self.cfg.job_profiles.keys().map(String::as_str).collect();
                fatal(
                    "UnknownJobRole",
                    format!(
                        "role: {role:?} is not one of the deployment's job roles ({})",
                        if known.is_empty() {
                            "none configured".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?),
            None => self.cfg.instance_profile_arn.as_ref(),
        };
        if let Some(arn) = profile {
            call = call.iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        if req.pool.market != Market::OnDemand {
            let mut spot = SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate);
            if let Some(max) = req.max_price_per_hour {
                spot = spot.max_price(format!("{max:.5}"));
            }
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(spot.build())
                    .build(),
            );
        }
        let out = call.send().await.map_err(|e| launch_error(&req.pool, e))?;
        let inst = out
            .instances()
            .first()
            .ok_or_else(|| fatal("NoInstance", "RunInstances returned no instance".into()))?;
        let info = instance_info(inst);
        Ok(LaunchedInstance {
            instance_id: info.instance_id,
            pool: req.pool.clone(),
            launched_at_ms: info
                .launched_at_ms
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
        })
    }

    #[tracing::instrument(skip(self), err, fields(instance_id = %id))]
    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError> {
        match self.client.describe_instances().instance_ids(&id.0).send().await {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .map(instance_info)),
            Err(e) if e.code().is_some_and(|c| NOT_FOUND_CODES.contains(&c)) => Ok(None),
            Err(e) => Err(ec2_error(e)),
        }
    }

    /// One DescribeInstances per 200 ids, through the `instance-id` filter: unlike
    /// `InstanceIds`, a filter does not fail the whole call for one id EC2 no longer knows.
    #[tracing::instrument(skip(self, ids), err, fields(n = ids.len()))]
    async fn describe_many(&self, ids: &[InstanceId]) -> Result<Vec<InstanceInfo>, LaunchError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let ids = chunk.iter().map(|i| i.0.clone()).collect();
            out.extend(
                self.describe_where(vec![Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids))
                    .build()])
                    .await?,
            );
        }
        Ok(out)
    }

    #[tracing::instrument(skip(self), err, fields(instance_id = %id))]
    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError> {
        match self.client.terminate_instances().instance_ids(&id.0).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code().is_some_and(|c| NOT_FOUND_CODES.contains(&c)) => Ok(()),
            Err(e) => Err(ec2_error(e)),
        }
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError> {
        self.describe_where(managed_live()).await
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_run(&self, run_id: &str) -> Result<Vec<InstanceInfo>, LaunchError> {
        let mut filters = managed_live();
        filters.push(
            Filter::builder()
                .name(format!("tag:{TAG_RUN_ID}"))
                .values(run_id)
                .build(),
        );
        self.describe_where(filters).await
    }
}

/// The filters of spotfit-managed instances not yet terminated.
fn managed_live() -> Vec<Filter> {
    let states = ["pending", "running", "stopping", "stopped", "shutting-down"].map(String::from);
    vec![
        Filter::builder()
            .name(format!("tag:{TAG_MANAGED}"))
            .values("true")
            .build(),
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(states.to_vec()))
            .build(),
    ]
}

impl Ec2Launcher {
    /// Every instance matching `filters`, every page.
    async fn describe_where(&self, filters: Vec<Filter>) -> Result<Vec<InstanceInfo>, LaunchError> {
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(ec2_error)?;
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(instance_info),
            );
        }
        Ok(out)
    }
}

/// The pool an instance is in, from its info.
pub fn pool_of(info: &InstanceInfo) -> Pool {
    Pool {
        instance_type: info.instance_type.clone(),
        az: info.az.clone(),
        market: info.market,
    }
}
