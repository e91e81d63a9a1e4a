//! The local launcher: an "instance" is the job run on this machine as a child process under
//! the monitor (on a thread of this process), writing what the agent writes on EC2 — sample
//! parts, the run summary, the exit marker — through the same keys into the local object
//! store. The pipeline steps cannot tell it from EC2 except by the `local-` instance id.
//!
//! What it mirrors of EC2: launch is idempotent on the ClientToken; the instance "runs" until
//! terminated; when the agent has finished the instance shuts itself down, as the user data
//! does (`shutdown -h now`). (The exit marker is written before; the check step reads it again
//! when it finds the instance stopped, so a stop right after the marker is never taken for a
//! lost instance — here or on EC2.) What it does not: capacity errors,
//! interruptions and boot time (none here); the deadline is the monitor's own timeout rather
//! than a scheduled shutdown, so a timed-out job is stopped at its `timeout_s`, not ten
//! minutes later.

use async_trait::async_trait;
use spotfit_core::ids::InstanceId;
use spotfit_core::pipeline::BOOT_GRACE_MS;
use spotfit_core::ports::{
    InstanceEnd, InstanceInfo, InstanceLauncher, InstanceState, LaunchError, LaunchRequest, LaunchedInstance,
    ObjectStore,
};
use spotfit_core::Sample;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A callback for each sample of a local run (e.g. a live status line).
pub type OnSample = Arc<dyn Fn(&Sample) + Send + Sync>;

/// How local "instances" run their job.
#[derive(Clone)]
pub struct LocalRunSettings {
    /// Between samples.
    pub interval: Duration,
    /// How often a part of samples is cut and stored while the job runs.
    pub upload_every: Duration,
    /// Send the job's stdout to our stderr (when our stdout carries JSON).
    pub stdout_to_stderr: bool,
    pub on_sample: Option<OnSample>,
    /// The user's stop request (Ctrl-C, SIGTERM to `spotfit run`): at its next describe each
    /// running job is stopped as a terminating instance would be (SIGTERM, then SIGKILL after
    /// a grace; the run marked interrupted). The signals belong to the command that owns this
    /// process, not to the agents on its threads: an agent catching them itself would mark the
    /// run interrupted, and an interruption is retried on another pool.
    pub stop: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for LocalRunSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRunSettings")
            .field("interval", &self.interval)
            .field("upload_every", &self.upload_every)
            .field("stdout_to_stderr", &self.stdout_to_stderr)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl Default for LocalRunSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            upload_every: Duration::from_secs(60),
            stdout_to_stderr: false,
            on_sample: None,
            stop: None,
        }
    }
}

struct Local {
    info: InstanceInfo,
    cancel: Arc<AtomicBool>,
    /// Set by the job's thread once the agent has finished (marker written, or failed).
    done: Arc<AtomicBool>,
    /// Why the agent failed, if it did (the job could not be started, the store refused …).
    agent_error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs each launched "instance" as a local job under the monitor.
pub struct LocalLauncher {
    objects: Arc<dyn ObjectStore>,
    spool_root: PathBuf,
    settings: LocalRunSettings,
    instances: Mutex<BTreeMap<InstanceId, Local>>,
    tokens: Mutex<HashMap<String, InstanceId>>,
}

impl std::fmt::Debug for LocalLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLauncher")
            .field("spool_root", &self.spool_root)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl LocalLauncher {
    /// `objects` is where the agent writes (the local store's object directory); each run
    /// spools under `spool_root/<agent run id>` first, as on an instance's disk.
    pub fn new(objects: Arc<dyn ObjectStore>, spool_root: PathBuf, settings: LocalRunSettings) -> Self {
        Self {
            objects,
            spool_root,
            settings,
            instances: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Why the agent of `id` failed, if it did.
    pub fn agent_error(&self, id: &InstanceId) -> Option<String> {
        let instances = self.instances.lock().ok()?;
        let local = instances.get(id)?;
        let err = local.agent_error.lock().ok()?.clone();
        err
    }

    fn poisoned() -> LaunchError {
        LaunchError::Fatal {
            code: "LocalLauncher".into(),
            message: "internal lock poisoned".into(),
        }
    }
}

#[async_trait]
impl InstanceLauncher for LocalLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchedInstance, LaunchError> {
        // Secrets are read on an AWS instance with its job role; this machine has neither the
        // role nor the store, and a job must not start without the variables it names.
        if let Some(name) = req.env_from.keys().next() {
            return Err(LaunchError::Fatal {
                code: "SecretsNeedAws".into(),
                message: format!(
                    "env_from.{name}: secrets are read on AWS instances only (spotfit submit); locally, pass the value in env"
                ),
            });
        }
        let mut tokens = self.tokens.lock().map_err(|_| Self::poisoned())?;
        let mut instances = self.instances.lock().map_err(|_| Self::poisoned())?;
        if let Some(id) = tokens.get(&req.client_token) {
            if let Some(l) = instances.get(id) {
                return Ok(LaunchedInstance {
                    instance_id: id.clone(),
                    pool: req.pool.clone(),
                    launched_at_ms: l.info.launched_at_ms.unwrap_or(0),
                });
            }
        }
        let launched_at_ms = now_ms();
        let id = InstanceId(format!(
            "{}{}-{}",
            InstanceId::LOCAL_PREFIX,
            std::process::id(),
            instances.len() + 1
        ));
        let agent_run_id = req.agent_run_id.clone();
        // The job's own timeout: what the pipeline's deadline gives it, less the boot grace.
        let timeout_ms = req.deadline_ms - launched_at_ms - BOOT_GRACE_MS;
        let cancel = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let agent_error = Arc::new(Mutex::new(None));
        let spool_dir = self.spool_root.join(&agent_run_id);
        let command = spotfit_monitor::CommandSpec {
            argv: req.argv.clone(),
            env: req.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            stdout_to_stderr: self.settings.stdout_to_stderr,
            cwd: None,
            refuse: None,
        };
        let opts = spotfit_monitor::MonitorOptions {
            interval: self.settings.interval,
            job: req.job.clone(),
            run_id: agent_run_id.clone(),
            spool_dir: Some(spool_dir.clone()),
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64)),
            upload: Some(spotfit_monitor::UploadOptions {
                store: self.objects.clone(),
                every: self.settings.upload_every,
                runtime: None,
                finish_timeout: Duration::from_secs(30),
            }),
            cancel: Some(cancel.clone()),
            memory_limit: req.memory_limit_bytes,
            // See `LocalRunSettings::stop`: this process's signals are not the agent's.
            handle_signals: false,
            ..Default::default()
        };
        let on_sample = self.settings.on_sample.clone();
        let (t_done, t_err) = (done.clone(), agent_error.clone());
        let thread = std::thread::Builder::new()
            .name(format!("spotfit-{agent_run_id}"))
            .spawn(move || {
                let mut each = |s: &Sample| {
                    if let Some(f) = &on_sample {
                        f(s)
                    }
                };
                let failure = match spotfit_monitor::run_command(&command, &opts, &mut each) {
                    Ok(out) => match &out.upload {
                        Some(r) if r.parts_pending > 0 || !r.summary_uploaded || !r.exit_marker_uploaded => {
                            Some(format!("not everything reached the store ({r:?}); the spool keeps it"))
                        }
                        // Everything is in the store: the spool is a second copy (on EC2 it goes
                        // with the instance's disk), so it goes now rather than piling up.
                        _ => {
                            if let Err(e) = std::fs::remove_dir_all(&spool_dir) {
                                tracing::warn!(dir = %spool_dir.display(), error = %e, "cannot remove a shipped spool");
                            }
                            None
                        }
                    },
                    Err(e) => Some(format!("running {:?}: {e}", command.argv)),
                };
                if let (Some(f), Ok(mut slot)) = (failure, t_err.lock()) {
                    *slot = Some(f);
                }
                t_done.store(true, Ordering::SeqCst);
            })
            .map_err(|e| LaunchError::Fatal {
                code: "LocalSpawn".into(),
                message: format!("cannot start the local agent thread: {e}"),
            })?;
        let info = InstanceInfo::launched(req, id.clone(), launched_at_ms);
        instances.insert(
            id.clone(),
            Local {
                info,
                cancel,
                done,
                agent_error,
                thread: Some(thread),
            },
        );
        tokens.insert(req.client_token.clone(), id.clone());
        Ok(LaunchedInstance {
            instance_id: id,
            pool: req.pool.clone(),
            launched_at_ms,
        })
    }

    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError> {
        let mut instances = self.instances.lock().map_err(|_| Self::poisoned())?;
        let Some(l) = instances.get_mut(id) else {
            return Ok(None);
        };
        if self.settings.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            l.cancel.store(true, Ordering::SeqCst);
        }
        if l.info.state == InstanceState::Running && l.done.load(Ordering::SeqCst) {
            l.info.state = InstanceState::Stopped;
            let why = l.agent_error.lock().ok().and_then(|e| e.clone());
            l.info.state_reason = Some(match why {
                Some(e) => format!("Client.InstanceInitiatedShutdown: the agent failed: {e}"),
                None => "Client.InstanceInitiatedShutdown: the agent finished".into(),
            });
            l.info.end = Some(InstanceEnd::SelfShutdown);
        }
        Ok(Some(l.info.clone()))
    }

    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError> {
        let thread = {
            let mut instances = self.instances.lock().map_err(|_| Self::poisoned())?;
            let Some(l) = instances.get_mut(id) else {
                return Ok(());
            };
            l.cancel.store(true, Ordering::SeqCst);
            l.info.state = InstanceState::Terminated;
            l.thread.take()
        };
        // The job gets SIGTERM at the monitor's next tick, SIGKILL after its grace; the agent
        // then ships what it has. Waiting here keeps "terminated" meaning "nothing left running".
        if let Some(t) = thread {
            let _ = t.join();
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError> {
        let instances = self.instances.lock().map_err(|_| Self::poisoned())?;
        Ok(instances
            .values()
            .filter(|l| l.info.state != InstanceState::Terminated)
            .map(|l| l.info.clone())
            .collect())
    }
}
