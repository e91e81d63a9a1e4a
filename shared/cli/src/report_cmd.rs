//! `spotfit report [JOB] [--since 7d] [-o FILE.html]`: one self-contained HTML page of the
//! runs in the local store or, with `--stack`, a deployment (spotfit-report draws it;
//! docs/report.md says what each part shows).

use anyhow::{bail, Context};
use clap::Args;
use spotfit_core::catalog::Catalog;
use spotfit_core::ids::valid_run_id;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this job's page.
    pub job: Option<String>,
    /// Only runs started within this long before now (`7d`, `36h`, `90min`). Default: all.
    #[arg(long, value_name = "AGE")]
    pub since: Option<String>,
    /// Where to write the page (`-`: stdout).
    #[arg(short = 'o', long, value_name = "FILE.html", default_value = "spotfit-report.html")]
    pub output: PathBuf,
    /// How many of each job's most recent attempts get their own charts (the ledger lists all).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub charts_per_job: usize,
}

pub fn run(store: Option<&Path>, stack: Option<&str>, args: ReportArgs) -> anyhow::Result<i32> {
    if let Some(j) = &args.job {
        if !valid_run_id(j) {
            bail!("JOB {j:?} is not a job name (letters, digits, '-', '_' or '.', at most 128)");
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    let since_ms = match &args.since {
        None => None,
        Some(s) => {
            let d = humantime::parse_duration(s)
                .with_context(|| format!("--since {s:?}: not an age such as 7d, 36h or 90min"))?;
            Some(now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(now))
        }
    };
    let started = Instant::now();
    let src = crate::source::Source::open(store, stack)?;
    let g = src.block_on(spotfit_report::gather(
        src.runs(),
        src.objects(),
        args.job.as_deref(),
        since_ms,
        args.charts_per_job,
    ))?;
    let source = src.describe();
    for w in &g.warnings {
        eprintln!("spotfit: warning: {w}");
    }
    if let Some(j) = &args.job {
        if g.runs.is_empty() {
            bail!(
                "no runs of job {j:?} in {source}{}",
                if since_ms.is_some() { " in that window" } else { "" }
            );
        }
    }
    let catalog = Catalog::embedded()?;
    let report = spotfit_report::build(spotfit_report::ReportInput {
        source,
        generated_at_ms: now,
        since_ms,
        job: args.job.clone(),
        runs: g.runs,
        samples: g.samples,
        charted_per_job: args.charts_per_job,
        catalog,
        warnings: g.warnings,
    });
    let page = spotfit_report::html::render(&report);
    if args.output.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().lock().write_all(page.as_bytes())?;
    } else {
        write_atomically(&args.output, page.as_bytes())?;
    }
    if args.output.as_os_str() != "-" || !std::io::stdout().is_terminal() {
        eprintln!(
            "spotfit: report of {} attempts of {} jobs ({:.0} KiB) written to {} in {:.2} s",
            report.fleet.attempts,
            report.jobs.len(),
            page.len() as f64 / 1024.0,
            args.output.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// Writes beside the target and renames over it, so a reader never sees half a page and a
/// failed write leaves the previous report. (Created as any file the user writes, under their
/// umask: the page is for sharing.)
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("-o {}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
