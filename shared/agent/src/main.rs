//! `spotfit-agent`: what an instance runs. `spotfit-agent monitor` takes exactly the arguments
//! of `spotfit monitor` (the same parser and code path, from `spotfit-monitor`), and ships to
//! S3 through [`s3::S3Store`] — SigV4 and blocking HTTPS, no AWS SDK, no tokio reactor — or to a
//! local directory (`file:///dir`).

mod creds;
mod s3;
mod secrets;
mod sigv4;

use clap::{Parser, Subcommand};
use spotfit_core::ports::ObjectStore;
use spotfit_monitor::cli::{MonitorArgs, PrefixedStore, SecretReader, UploadUrl};
use spotfit_monitor::MonitorError;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "spotfit-agent",
    version,
    about = "spotfit's instance agent: sample a job, ship samples to S3."
)]
struct Cli {
    /// Log level or per-target levels on stderr (e.g. `info`, `warn,spotfit_monitor=debug`).
    #[arg(long, global = true, env = "SPOTFIT_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command (or attach to a pid, cgroup or container), sample it, spool and upload.
    Monitor(MonitorArgs),
}

type Opened = (Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn bad(field: &'static str, reason: String) -> MonitorError {
    MonitorError::BadInput { field, reason }
}

/// The region to sign for: `AWS_REGION`/`AWS_DEFAULT_REGION`, else (on EC2) the instance's.
fn region(imds: Option<&str>) -> Result<String, MonitorError> {
    match s3::region(&env) {
        Some(r) => r.map_err(|(f, r)| bad(f, r)),
        None => match imds {
            Some(ep) => creds::imds_region(ep)
                .and_then(|r| s3::check_region(&r))
                .map_err(|r| bad(s3::REGION_ENV, format!("not set, and {r}"))),
            None => Err(bad(s3::REGION_ENV, "not set (nor AWS_DEFAULT_REGION)".into())),
        },
    }
}

/// `AWS_CA_BUNDLE`'s certificates, if it is set.
fn roots() -> Result<Option<Vec<ureq::tls::Certificate<'static>>>, MonitorError> {
    match env(s3::CA_BUNDLE_ENV).filter(|p| !p.is_empty()) {
        Some(path) => Ok(Some(
            std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| s3::ca_bundle(&pem))
                .map_err(|r| bad(s3::CA_BUNDLE_ENV, format!("{path}: {r}")))?,
        )),
        None => Ok(None),
    }
}

/// The store `--upload` names. S3 gets no runtime handle: its futures complete on first poll,
/// so the uploader's own current-thread runtime (no reactor threads) drives them.
fn open_store(args: &MonitorArgs, url: &UploadUrl) -> Result<Opened, MonitorError> {
    match url {
        UploadUrl::Dir(d) => Ok((Arc::new(spotfit_monitor::fs_store::FsObjectStore::new(d.clone())), None)),
        UploadUrl::S3 { bucket, prefix } => {
            let imds = creds::imds_endpoint(&args.imds, &env);
            let source = creds::source(&env, imds.as_deref()).map_err(|(f, r)| bad(f, r))?;
            let region = region(imds.as_deref())?;
            let (endpoint, style) = s3::endpoint(&env, &region, bucket).map_err(|(f, r)| bad(f, r))?;
            let provider = creds::Provider::new(source).map_err(|(f, r)| bad(f, r))?;
            let store =
                s3::S3Store::new(endpoint, style, bucket, &region, provider, roots()?).map_err(|r| bad("upload", r))?;
            Ok((
                Arc::new(PrefixedStore {
                    inner: store,
                    prefix: prefix.clone(),
                }),
                None,
            ))
        }
    }
}

/// The reader of `--env-from` secrets, on the same credentials, region and trust store as the
/// S3 shipping. One that cannot be built answers every read with why, so the job is recorded
/// as not started rather than the agent exiting without a trace.
fn secret_reader(args: &MonitorArgs) -> Box<dyn SecretReader> {
    let build = || -> Result<secrets::Reader, MonitorError> {
        let imds = creds::imds_endpoint(&args.imds, &env);
        let source = creds::source(&env, imds.as_deref()).map_err(|(f, r)| bad(f, r))?;
        let region = region(imds.as_deref())?;
        let provider = creds::Provider::new(source).map_err(|(f, r)| bad(f, r))?;
        secrets::Reader::new(&env, &region, provider, roots()?).map_err(|(f, r)| bad(f, r))
    };
    match build() {
        Ok(r) => Box::new(r),
        Err(e) => Box::new(secrets::Unavailable(e.to_string())),
    }
}

fn init_logging(filter: &str) {
    // `Targets` parses `level` and `target=level,…` without env-filter's regex engine.
    let targets: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_else(|_| {
        eprintln!("spotfit-agent: --log {filter:?} is not a level or target=level list; using warn");
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let Command::Monitor(args) = &cli.command;
    let open = |u: &UploadUrl| open_store(args, u);
    let reader = (!args.env_from.is_empty()).then(|| secret_reader(args));
    match spotfit_monitor::cli::run(args, &open, reader.as_deref()) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("spotfit-agent monitor: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
