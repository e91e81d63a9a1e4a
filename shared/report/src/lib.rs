//! spotfit-report: `spotfit report`'s page. [`gather`] reads the runs and the samples of the
//! attempts to be charted through the ports (the local store or a deployment, alike);
//! [`model::build`] computes the figures; [`html::render`] draws one self-contained page.
//! See docs/report.md.

pub mod charts;
pub mod html;
pub mod model;

pub use model::{build, Report, ReportInput};

use spotfit_core::ids::{day_of, RunKeys};
use spotfit_core::pipeline::attempt_run_id;
use spotfit_core::ports::{ObjectStore, RunStore, StoreError};
use spotfit_core::run::RunRecord;
use spotfit_core::sample::Sample;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};

/// Most attempts one report reads. A store with more is reported on its most recent ones, and
/// the page says so (a [`Gathered::warnings`] line).
pub const MAX_ATTEMPTS: usize = 100_000;

/// What [`gather`] read.
#[derive(Debug, Default)]
pub struct Gathered {
    pub runs: Vec<RunRecord>,
    pub samples: BTreeMap<(String, u32), Vec<Sample>>,
    /// Sample lines or parts that could not be read, said in the page and on stderr; the rest
    /// of the run is still drawn.
    pub warnings: Vec<String>,
}

/// The attempts in the window (`job`, `since_ms`) whose samples the page draws: the most
/// recent `per_job` of each job. The one rule, used to pick what [`gather`] reads and what
/// [`model::build`] marks as charted.
pub fn charted(runs: &[RunRecord], per_job: usize) -> BTreeSet<(String, u32)> {
    let mut by_job: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        by_job.entry(r.job.as_str()).or_default().push(r);
    }
    let mut out = BTreeSet::new();
    for (_, mut v) in by_job {
        v.sort_by(|a, b| model::order(a, b));
        let n = v.len();
        for r in v.into_iter().skip(n.saturating_sub(per_job)) {
            out.insert((r.run_id.clone(), r.attempt));
        }
    }
    out
}

/// Reads the attempts of the window and the samples of those to be charted.
pub async fn gather(
    runs: &dyn RunStore,
    objects: &dyn ObjectStore,
    job: Option<&str>,
    since_ms: Option<i64>,
    per_job: usize,
) -> Result<Gathered, StoreError> {
    let mut g = Gathered {
        runs: runs
            .list(job, MAX_ATTEMPTS)
            .await?
            .into_iter()
            .filter(|r| model::in_window(r, job, since_ms))
            .collect(),
        ..Default::default()
    };
    if g.runs.len() >= MAX_ATTEMPTS {
        g.warnings.push(format!(
            "the store holds more than {MAX_ATTEMPTS} attempts in this window: the report covers the most recent {MAX_ATTEMPTS}"
        ));
    }
    let chart = charted(&g.runs, per_job);
    for r in &g.runs {
        let key = (r.run_id.clone(), r.attempt);
        if chart.contains(&key) {
            let s = read_samples(objects, r, &mut g.warnings).await?;
            g.samples.insert(key, s);
        }
    }
    Ok(g)
}

/// The samples the agent shipped for one attempt, in sequence order (a part shipped twice by a
/// retried upload counts once).
pub async fn read_samples(
    objects: &dyn ObjectStore,
    r: &RunRecord,
    warnings: &mut Vec<String>,
) -> Result<Vec<Sample>, StoreError> {
    let agent_run = attempt_run_id(&r.run_id, r.attempt);
    // The agent names its keys by the day it started: the summary's, or for an attempt that
    // has none, the day it was last seen or the one before (it boots across midnight at most).
    let days: Vec<String> = match (&r.summary, r.heartbeat_ms) {
        (Some(s), _) => vec![day_of(s.started_at_ms)],
        (None, Some(t)) => vec![day_of(t), day_of(t - 86_400_000)],
        (None, None) => Vec::new(),
    };
    let mut samples: BTreeMap<u64, Sample> = BTreeMap::new();
    for day in days {
        let keys = RunKeys {
            job: r.job.clone(),
            day,
            run_id: agent_run.clone(),
        };
        let parts = keys.sample_parts_in_order(objects.list(&keys.samples_prefix()).await?);
        for key in parts {
            let Some(bytes) = objects.get(&key).await? else {
                continue;
            };
            let reader = BufReader::new(flate2::read::MultiGzDecoder::new(bytes.as_slice()));
            for (i, line) in reader.lines().enumerate() {
                match line {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => match serde_json::from_str::<Sample>(&l) {
                        Ok(s) => {
                            samples.entry(s.seq).or_insert(s);
                        }
                        Err(e) => warnings.push(format!("{key} line {}: not a sample ({e}); skipped", i + 1)),
                    },
                    Err(e) => {
                        warnings.push(format!(
                            "{key}: unreadable after line {i} ({e}); the rest of the part skipped"
                        ));
                        break;
                    }
                }
            }
        }
        if !samples.is_empty() {
            break;
        }
    }
    Ok(samples.into_values().collect())
}
