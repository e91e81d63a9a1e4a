//! The trace reader: the normalized job-trace CSV (`data/traces/*.csv[.gz]`, columns as in
//! `data/traces/README.md`) into jobs, with a stated rule for every missing value.

use serde::Serialize;
use spotfit_core::catalog::Catalog;
use spotfit_core::units::bytes_to_gib;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;

/// Most bytes a trace may hold once inflated. The largest public trace the project ships is
/// 2.2 MB; this leaves room for traces 100× longer and refuses a gzip bomb long before memory
/// runs out (the reader streams, so a bomb costs one line buffer, never its inflated size).
pub const MAX_TRACE_BYTES: u64 = 256 << 20;
/// Most data rows: 25× the longest shipped trace. With names bounded too, 250 k rows hold
/// < 200 MiB of parsed values, the reader's memory bound whatever the input.
pub const MAX_ROWS: usize = 250_000;
/// Longest job name.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest line; a real row is ~200 bytes, a line of a gzip bomb of zeros has no end.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Values no job can have: a row beyond these is an error in the trace, not a job to price.
const MAX_DURATION_S: f64 = 366.0 * 86_400.0;
const MAX_SUBMIT_S: f64 = 1.0e10;
const MAX_CORES: f64 = 4096.0;
const MAX_GIB: f64 = 65_536.0;
const MAX_GPU: f64 = 64.0;
/// A job's input: 1 EiB is past any real one.
const MAX_INPUT_BYTES: f64 = 1.0e18;

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
    #[error("trace row {row}, column `{column}`: {len} bytes; at most {max}")]
    TooLong {
        row: usize,
        column: &'static str,
        len: usize,
        max: usize,
    },
    #[error("trace row {row}, column `{column}`: {value} is impossible for a job (at most {max})")]
    Impossible {
        row: usize,
        column: &'static str,
        value: f64,
        max: f64,
    },
    #[error(
        "trace row {row} (job {job:?}): {what}; no instance type in {region} can run it, so no policy could be priced"
    )]
    Unplaceable {
        row: usize,
        job: String,
        region: String,
        what: String,
    },
    #[error("trace is larger than {limit} {unit} (a gzip bomb, or not a trace); nothing was simulated")]
    TooLarge { limit: u64, unit: &'static str },
    #[error("trace has no usable job: {rows} data row(s), {dropped} dropped (no duration, no name, or neither a memory peak nor a request)")]
    NoJobs { rows: usize, dropped: usize },
}

/// Which bound a [`Bounded`] reader hit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    Bytes,
    Line,
}

/// A reader that fails once `MAX_TRACE_BYTES` have passed or a line outgrows
/// `MAX_LINE_BYTES`, recording which bound it hit.
struct Bounded<'a, R> {
    inner: R,
    total: u64,
    line: usize,
    hit: &'a Cell<Option<Limit>>,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(64 << 10);
        let n = self.inner.read(&mut buf[..want])?;
        self.total += n as u64;
        if self.total > MAX_TRACE_BYTES {
            self.hit.set(Some(Limit::Bytes));
            return Err(std::io::Error::other("trace too large"));
        }
        for b in &buf[..n] {
            if *b == b'\n' {
                self.line = 0;
            } else {
                self.line += 1;
                if self.line > MAX_LINE_BYTES {
                    self.hit.set(Some(Limit::Line));
                    return Err(std::io::Error::other("line too long"));
                }
            }
        }
        Ok(n)
    }
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

/// Reads a trace from CSV bytes; gzip input (magic 1f 8b) is inflated as it is read, every
/// member of a multi-member file (`cat a.gz b.gz`, bgzip), within the bounds above.
pub fn read_trace(name: &str, bytes: &[u8]) -> Result<Trace, TraceError> {
    let hit = Cell::new(None);
    let source: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let bounded = Bounded {
        inner: source,
        total: 0,
        line: 0,
        hit: &hit,
    };
    let limit_err = |e: TraceError| match hit.get() {
        Some(Limit::Bytes) => TraceError::TooLarge {
            limit: MAX_TRACE_BYTES,
            unit: "bytes inflated",
        },
        Some(Limit::Line) => TraceError::TooLarge {
            limit: MAX_LINE_BYTES as u64,
            unit: "bytes in one line",
        },
        None => e,
    };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(bounded);
    let headers = rdr.headers().map_err(|e| limit_err(e.into()))?.clone();
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
    // Rows are parsed as they stream by; only the parsed values are kept for the second
    // pass (the submit-time rule needs to know whether any row has one).
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    let mut row = 0;
    while rdr.read_record(&mut rec).map_err(|e| limit_err(e.into()))? {
        row += 1;
        if row > MAX_ROWS {
            return Err(TraceError::TooLarge {
                limit: MAX_ROWS as u64,
                unit: "rows",
            });
        }
        let submit = bounded_num(&rec, ix("submit_time_s"), row, "submit_time_s", MAX_SUBMIT_S)?;
        any_submit |= submit.is_some();
        let name = rec.get(col["job_name"]).unwrap_or("").trim();
        if name.len() > MAX_NAME_BYTES {
            return Err(TraceError::TooLong {
                row,
                column: "job_name",
                len: name.len(),
                max: MAX_NAME_BYTES,
            });
        }
        rows.push(ParsedRow {
            row,
            name: name.to_string(),
            submit,
            duration: bounded_num(&rec, ix("duration_s"), row, "duration_s", MAX_DURATION_S)?,
            req_vcpu: bounded_num(&rec, ix("requested_vcpu"), row, "requested_vcpu", MAX_CORES)?,
            req_mem: bounded_num(&rec, ix("requested_mem_gib"), row, "requested_mem_gib", MAX_GIB)?,
            peak: bounded_num(&rec, ix("mem_peak_gib"), row, "mem_peak_gib", MAX_GIB)?,
            cpu_avg: bounded_num(&rec, ix("cpu_avg_cores"), row, "cpu_avg_cores", MAX_CORES)?,
            cpu_p95: bounded_num(&rec, ix("cpu_p95_cores"), row, "cpu_p95_cores", MAX_CORES)?,
            cpu_peak: bounded_num(&rec, ix("cpu_peak_cores"), row, "cpu_peak_cores", MAX_CORES)?,
            gpu: bounded_num(&rec, ix("gpu"), row, "gpu", MAX_GPU)?,
            input_bytes: bounded_num(&rec, ix("input_bytes"), row, "input_bytes", MAX_INPUT_BYTES)?,
        });
    }
    let data_rows = rows.len();
    for r in rows {
        let ParsedRow { row, name, submit, .. } = r;
        let req_vcpu = r.req_vcpu.filter(|v| *v > 0.0);
        let req_mem = r.req_mem.filter(|v| *v > 0.0);
        let input_bytes = r.input_bytes.filter(|v| *v >= 1.0).map(|v| v as u64);
        let (Some(duration), false) = (r.duration, name.is_empty()) else {
            m.dropped += 1;
            continue;
        };
        let mem_peak_gib = match (r.peak, req_mem) {
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
        let cpu_avg = match r.cpu_avg {
            Some(v) => v,
            None => {
                m.cpu_avg_from_request += 1;
                req_vcpu.unwrap_or(1.0)
            }
        };
        let cpu_p95 = match r.cpu_p95 {
            Some(v) => v,
            None => {
                m.cpu_p95_from_avg += 1;
                cpu_avg
            }
        };
        let cpu_peak = match r.cpu_peak {
            Some(v) => v,
            None => {
                m.cpu_peak_from_p95 += 1;
                cpu_p95.max(cpu_avg)
            }
        };
        let gpu = match r.gpu {
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
    if jobs.is_empty() {
        return Err(TraceError::NoJobs {
            rows: data_rows,
            dropped: m.dropped,
        });
    }
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s).then(a.row.cmp(&b.row)));
    Ok(Trace {
        name: name.to_string(),
        jobs,
        missing: m,
    })
}

/// One data row's values, before the missing-value rules.
struct ParsedRow {
    row: usize,
    name: String,
    submit: Option<f64>,
    duration: Option<f64>,
    req_vcpu: Option<f64>,
    req_mem: Option<f64>,
    peak: Option<f64>,
    cpu_avg: Option<f64>,
    cpu_p95: Option<f64>,
    cpu_peak: Option<f64>,
    gpu: Option<f64>,
    input_bytes: Option<f64>,
}

fn bounded_num(
    rec: &csv::StringRecord,
    ix: Option<usize>,
    row: usize,
    column: &'static str,
    max: f64,
) -> Result<Option<f64>, TraceError> {
    match num(rec, ix, row, column)? {
        Some(v) if v > max => Err(TraceError::Impossible {
            row,
            column,
            value: v,
            max,
        }),
        other => Ok(other),
    }
}

/// Checks that every job of `trace` fits some instance type of `region` (memory, cores, GPUs):
/// one job no type can hold would make every policy's cost meaningless.
pub fn check_fits(trace: &Trace, catalog: &Catalog, region: &str) -> Result<(), TraceError> {
    let offers = catalog.region(region);
    let max_mem = offers.iter().map(|o| bytes_to_gib(o.memory_bytes)).fold(0.0, f64::max);
    let max_vcpu = offers.iter().map(|o| o.vcpu).max().unwrap_or(0) as f64;
    let max_gpu = offers.iter().map(|o| o.gpu).max().unwrap_or(0);
    for j in &trace.jobs {
        let what = if j.mem_peak_gib > max_mem {
            format!("memory peak {} GiB > the largest type's {max_mem} GiB", j.mem_peak_gib)
        } else if j.cpu_avg_cores > max_vcpu {
            format!(
                "average CPU {} cores > the largest type's {max_vcpu} vCPUs",
                j.cpu_avg_cores
            )
        } else if j.gpu > max_gpu {
            format!("{} GPUs > the most any type has ({max_gpu})", j.gpu)
        } else {
            continue;
        };
        return Err(TraceError::Unplaceable {
            row: j.row,
            job: j.job_name.chars().take(64).collect(),
            region: region.to_string(),
            what,
        });
    }
    Ok(())
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

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_multi_member_gzip_reads_every_member() {
        // GIVEN `cat part1.csv.gz part2.csv.gz` (as bgzip and log rotation write them)
        let mut bytes = gz(b"job_name,duration_s,mem_peak_gib\na,10,1\nb,20,2\n");
        bytes.extend(gz(b"c,30,3\n"));
        bytes.extend(gz(b"d,40,4\n"));
        // WHEN read THEN every member's rows are there
        let t = read_trace("t", &bytes).unwrap();
        let names: Vec<&str> = t.jobs.iter().map(|j| j.job_name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn header_only_and_all_nan_traces_are_refused() {
        for csv in [
            "job_name,duration_s,mem_peak_gib\n",
            "job_name,duration_s,mem_peak_gib\na,nan,nan\nb,NaN,-\n",
            "job_name,duration_s,mem_peak_gib",
        ] {
            let err = read_trace("t", csv.as_bytes()).unwrap_err();
            assert!(matches!(err, TraceError::NoJobs { .. }), "{csv:?}: {err}");
            assert!(err.to_string().contains("no usable job"), "{err}");
        }
    }

    #[test]
    fn impossible_rows_are_refused_naming_row_and_column() {
        let cases = [
            ("a,1e12,1", "duration_s"),
            ("a,10,1e9", "mem_peak_gib"),
            ("a,10,1,100000", "cpu_avg_cores"),
            ("a,10,1,1,1000", "gpu"),
        ];
        for (row, column) in cases {
            let csv = format!("job_name,duration_s,mem_peak_gib,cpu_avg_cores,gpu\nok,1,1\n{row}\n");
            let err = read_trace("t", csv.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("row 2") && err.contains(column), "{row}: {err}");
        }
        let long = format!(
            "job_name,duration_s,mem_peak_gib\n{},1,1\n",
            "n".repeat(MAX_NAME_BYTES + 1)
        );
        assert!(matches!(
            read_trace("t", long.as_bytes()),
            Err(TraceError::TooLong { .. })
        ));
    }

    #[test]
    fn a_job_no_instance_type_can_hold_is_refused_before_simulating() {
        // GIVEN one row within the reader's bounds but beyond every instance type of the region
        let csv = "job_name,duration_s,mem_peak_gib\nok,10,1\nhuge,10,60000\n";
        let t = read_trace("t", csv.as_bytes()).unwrap();
        let cat = Catalog::embedded().unwrap();
        // WHEN checked against the region THEN the error names the row and why
        let err = check_fits(&t, cat, "us-east-1").unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("memory peak"), "{err}");
        assert!(check_fits(
            &read_trace("t", b"job_name,duration_s,mem_peak_gib\nok,10,1\n").unwrap(),
            cat,
            "us-east-1"
        )
        .is_ok());
    }

    #[test]
    fn an_endless_line_and_too_many_rows_are_refused() {
        let mut zeros = b"job_name,duration_s,mem_peak_gib\n".to_vec();
        zeros.extend(std::iter::repeat_n(b'0', MAX_LINE_BYTES + 10));
        let err = read_trace("t", &gz(&zeros)).unwrap_err();
        assert!(
            matches!(
                err,
                TraceError::TooLarge {
                    unit: "bytes in one line",
                    ..
                }
            ),
            "{err}"
        );
        let mut rows = b"job_name,duration_s,mem_peak_gib\n".to_vec();
        for _ in 0..=MAX_ROWS {
            rows.extend(b"a,1,1\n");
        }
        let err = read_trace("t", &gz(&rows)).unwrap_err();
        assert!(matches!(err, TraceError::TooLarge { unit: "rows", .. }), "{err}");
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
