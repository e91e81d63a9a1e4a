//! The trace reader: the normalized job-trace CSV (`data/traces/*.csv[.gz]`, columns as in
//! `data/traces/README.md`) into jobs, with a stated rule for every missing value.

use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;

/// One job run of a trace, with missing values already resolved (see [`MissingRule`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceJob {
    /// Row number in the file (1 = first data row).
    pub row: usize,
    pub job_name: String,
    pub submit_s: f64,
    /// What the job asked for; None when the trace has no request.
    pub requested_vcpu: Option<f64>,
    pub requested_mem_gib: Option<f64>,
    pub duration_s: f64,
    pub cpu_avg_cores: f64,
    pub cpu_p95_cores: f64,
    pub cpu_peak_cores: f64,
    pub mem_peak_gib: f64,
    pub gpu: u32,
    /// Size of the run's input, bytes (optional column `input_bytes`; None when absent,
    /// empty or not positive).
    pub input_bytes: Option<u64>,
}

/// Rules applied for missing values, counted per trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MissingCounts {
    /// No submit time in the whole file: jobs arrive one after another in file order, each
    /// when the previous one has finished (a serial workflow engine).
    pub submit_serial: usize,
    /// Some rows lack a submit time: the previous row's submit time.
    pub submit_previous: usize,
    /// No average CPU: the requested vCPUs (the job kept what it asked for busy), else 1.
    pub cpu_avg_from_request: usize,
    /// No p95 CPU: the average. No peak CPU: the larger of p95 and average.
    pub cpu_p95_from_avg: usize,
    pub cpu_peak_from_p95: usize,
    /// No memory peak: the requested memory (it needed all it asked for).
    pub mem_peak_from_request: usize,
    /// No GPU column value: 0.
    pub gpu_zero: usize,
    /// Rows dropped: no usable duration, or neither a memory peak nor a request.
    pub dropped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub name: String,
    /// Jobs in submit order (stable for equal times: file order).
    pub jobs: Vec<TraceJob>,
    pub missing: MissingCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("trace is not CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("trace has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("trace row {row}, column `{column}`: `{value}` is not a number >= 0")]
    BadNumber { row: usize, column: String, value: String },
}

const REQUIRED: [&str; 3] = ["job_name", "duration_s", "mem_peak_gib"];

fn num(rec: &csv::StringRecord, ix: Option<usize>, row: usize, column: &str) -> Result<Option<f64>, TraceError> {
    let Some(raw) = ix.and_then(|i| rec.get(i)).map(str::trim) else {
        return Ok(None);
    };
    if raw.is_empty() || raw == "-" || raw.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err(TraceError::BadNumber {
            row,
            column: column.into(),
            value: raw.into(),
        }),
    }
}

/// Reads a trace from CSV bytes; gzip input (magic 1f 8b) is inflated first.
pub fn read_trace(name: &str, bytes: &[u8]) -> Result<Trace, TraceError> {
    let mut owned = Vec::new();
    let data: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut owned)?;
        &owned
    } else {
        bytes
    };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let headers = rdr.headers()?.clone();
    let col: HashMap<&str, usize> = headers.iter().enumerate().map(|(i, h)| (h.trim(), i)).collect();
    for c in REQUIRED {
        if !col.contains_key(c) {
            return Err(TraceError::MissingColumn(c));
        }
    }
    let ix = |c: &str| col.get(c).copied();
    let mut m = MissingCounts::default();
    let mut jobs = Vec::new();
    let mut prev_submit: Option<f64> = None;
    let mut serial_clock = 0.0;
    let mut any_submit = false;
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let row = i + 1;
        let submit = num(&rec, ix("submit_time_s"), row, "submit_time_s")?;
        any_submit |= submit.is_some();
        rows.push((row, rec, submit));
    }
    for (row, rec, submit) in rows {
        let name = rec.get(col["job_name"]).unwrap_or("").trim().to_string();
        let duration = num(&rec, ix("duration_s"), row, "duration_s")?;
        let req_vcpu = num(&rec, ix("requested_vcpu"), row, "requested_vcpu")?.filter(|v| *v > 0.0);
        let req_mem = num(&rec, ix("requested_mem_gib"), row, "requested_mem_gib")?.filter(|v| *v > 0.0);
        let peak = num(&rec, ix("mem_peak_gib"), row, "mem_peak_gib")?;
        let input_bytes = num(&rec, ix("input_bytes"), row, "input_bytes")?
            .filter(|v| *v >= 1.0)
            .map(|v| v as u64);
        let (Some(duration), false) = (duration, name.is_empty()) else {
            m.dropped += 1;
            continue;
        };
        let mem_peak_gib = match (peak, req_mem) {
            (Some(p), _) => p,
            (None, Some(r)) => {
                m.mem_peak_from_request += 1;
                r
            }
            (None, None) => {
                m.dropped += 1;
                continue;
            }
        };
        let cpu_avg = match num(&rec, ix("cpu_avg_cores"), row, "cpu_avg_cores")? {
            Some(v) => v,
            None => {
                m.cpu_avg_from_request += 1;
                req_vcpu.unwrap_or(1.0)
            }
        };
        let cpu_p95 = match num(&rec, ix("cpu_p95_cores"), row, "cpu_p95_cores")? {
            Some(v) => v,
            None => {
                m.cpu_p95_from_avg += 1;
                cpu_avg
            }
        };
        let cpu_peak = match num(&rec, ix("cpu_peak_cores"), row, "cpu_peak_cores")? {
            Some(v) => v,
            None => {
                m.cpu_peak_from_p95 += 1;
                cpu_p95.max(cpu_avg)
            }
        };
        let gpu = match num(&rec, ix("gpu"), row, "gpu")? {
            Some(g) => g.round() as u32,
            None => {
                m.gpu_zero += 1;
                0
            }
        };
        let submit_s = match submit {
            Some(s) => s,
            None if !any_submit => {
                m.submit_serial += 1;
                let t = serial_clock;
                serial_clock += duration;
                t
            }
            None => {
                m.submit_previous += 1;
                prev_submit.unwrap_or(0.0)
            }
        };
        prev_submit = Some(submit_s);
        jobs.push(TraceJob {
            row,
            job_name: name,
            submit_s,
            requested_vcpu: req_vcpu,
            requested_mem_gib: req_mem,
            duration_s: duration,
            cpu_avg_cores: cpu_avg,
            cpu_p95_cores: cpu_p95.max(cpu_avg),
            cpu_peak_cores: cpu_peak.max(cpu_p95).max(cpu_avg),
            mem_peak_gib,
            gpu,
            input_bytes,
        });
    }
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s).then(a.row.cmp(&b.row)));
    Ok(Trace {
        name: name.to_string(),
        jobs,
        missing: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_follow_the_rules() {
        // GIVEN a trace without submit times, one row without CPU, one without a duration
        let csv = "job_name,submit_time_s,requested_vcpu,requested_mem_gib,duration_s,cpu_avg_cores,cpu_peak_cores,mem_peak_gib,gpu\n\
                   a,,2,4,10,,,1.5,0\n\
                   b,,1,1,,0.5,,0.5,0\n\
                   a,,2,4,20,1.5,,,\n";
        let t = read_trace("t", csv.as_bytes()).unwrap();
        // THEN the serial rule gives submit 0 and 10, the CPU comes from the request, the peak from the request
        assert_eq!(t.jobs.len(), 2);
        assert_eq!((t.jobs[0].submit_s, t.jobs[1].submit_s), (0.0, 10.0));
        assert_eq!(t.jobs[0].cpu_avg_cores, 2.0);
        assert_eq!(t.jobs[1].mem_peak_gib, 4.0);
        assert_eq!(t.missing.dropped, 1);
        assert_eq!(t.missing.cpu_avg_from_request, 1);
        assert_eq!(t.missing.gpu_zero, 1);
        // … and without an input_bytes column no run has an input size
        assert!(t.jobs.iter().all(|j| j.input_bytes.is_none()));
    }

    #[test]
    fn input_size_column_is_optional_per_row() {
        // GIVEN an input_bytes column with a size, an empty cell and a zero
        let csv = "job_name,duration_s,mem_peak_gib,input_bytes\na,10,1,3732192122\na,11,1,\na,12,1,0\n";
        let t = read_trace("t", csv.as_bytes()).unwrap();
        // THEN the size is kept where given, unknown elsewhere
        let got: Vec<Option<u64>> = t.jobs.iter().map(|j| j.input_bytes).collect();
        assert_eq!(got, vec![Some(3_732_192_122), None, None]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(
            read_trace("t", b"x,y\n1,2\n"),
            Err(TraceError::MissingColumn("job_name"))
        ));
        let err = read_trace("t", b"job_name,duration_s,mem_peak_gib\na,-3,1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration_s"), "{err}");
    }
}
