//! The job-log format: what the agent keeps of a job's stdout and stderr (docs/notes/monitor.md,
//! "Job logs"). A log part is `gzip(MAGIC ++ record*)`; a record is
//!
//! ```text
//! stream: u8 (1 = stdout, 2 = stderr) | ts_ms: i64 LE | len: u32 LE | len raw bytes
//! ```
//!
//! Binary-safe (the bytes are the job's, unchanged, UTF-8 or not), each stream can be put back
//! together byte for byte (concatenate its records in order), and the records in order are the
//! arrival order across both streams (as far as the agent saw it: two pipes read by two
//! threads). Pure: the gzip layer is the monitor's (`spotfit_monitor::logs::read_part`).

use serde::{Deserialize, Serialize};

/// First bytes of every decompressed log part (format version 1).
pub const MAGIC: &[u8; 8] = b"SFLOG01\n";
/// Bytes of a record's header: stream, timestamp, length.
pub const HEADER_LEN: usize = 13;
/// How much of each stream the run summary keeps.
pub const SUMMARY_TAIL_BYTES: usize = 64 * 1024;
/// How much of each stream the run record keeps (the record travels in the Step Functions
/// state, 256 KiB at most, and is one DynamoDB attribute of a 400 KB item; JSON escaping can
/// grow control bytes six-fold, so 2 × 4 KiB stays far under both).
pub const RECORD_TAIL_BYTES: usize = 4 * 1024;

/// Which of the job's streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One read from one of the job's pipes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: Stream,
    /// When the agent read it, Unix ms.
    pub ts_ms: i64,
    pub bytes: Vec<u8>,
}

/// A log part that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFormatError {
    #[error("not a spotfit log part (no {magic:?} header)", magic = String::from_utf8_lossy(MAGIC))]
    BadMagic,
    #[error("record at byte {offset}: unknown stream {stream}")]
    BadStream { offset: usize, stream: u8 },
    #[error("record at byte {offset} is cut short ({have} of {need} bytes)")]
    Truncated { offset: usize, have: usize, need: usize },
}

/// Appends one record (header and bytes) to `out`.
pub fn append_record(out: &mut Vec<u8>, stream: Stream, ts_ms: i64, bytes: &[u8]) {
    out.extend_from_slice(&header(stream, ts_ms, bytes.len()));
    out.extend_from_slice(bytes);
}

/// A record's header. `len` above `u32::MAX` is the caller's bug (the agent reads 64 KiB at most).
pub fn header(stream: Stream, ts_ms: i64, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = stream as u8;
    h[1..9].copy_from_slice(&ts_ms.to_le_bytes());
    h[9..13].copy_from_slice(&(len.min(u32::MAX as usize) as u32).to_le_bytes());
    h
}

/// Decodes a decompressed part: [`MAGIC`] then records.
pub fn decode_part(buf: &[u8]) -> Result<Vec<Record>, LogFormatError> {
    let body = buf.strip_prefix(MAGIC.as_slice()).ok_or(LogFormatError::BadMagic)?;
    decode_records(body, MAGIC.len())
}

/// Decodes a run of records (no magic); `base` is their offset in the part, for errors.
pub fn decode_records(buf: &[u8], base: usize) -> Result<Vec<Record>, LogFormatError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let (stream, ts_ms, len) = read_header(buf, at).map_err(|e| offset_by(e, base))?;
        let start = at + HEADER_LEN;
        let bytes = buf.get(start..start + len).ok_or(LogFormatError::Truncated {
            offset: base + at,
            have: buf.len() - at,
            need: HEADER_LEN + len,
        })?;
        out.push(Record {
            stream,
            ts_ms,
            bytes: bytes.to_vec(),
        });
        at = start + len;
    }
    Ok(out)
}

/// Length of the longest prefix of `buf` made of whole records: what a spool segment the agent
/// was writing when it died can still give (the cut record's bytes were never acknowledged).
pub fn complete_len(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok((_, _, len)) = read_header(buf, at) {
        if buf.len() - at - HEADER_LEN < len {
            break;
        }
        at += HEADER_LEN + len;
    }
    at
}

fn read_header(buf: &[u8], at: usize) -> Result<(Stream, i64, usize), LogFormatError> {
    let h = buf.get(at..at + HEADER_LEN).ok_or(LogFormatError::Truncated {
        offset: at,
        have: buf.len().saturating_sub(at),
        need: HEADER_LEN,
    })?;
    let stream = Stream::from_byte(h[0]).ok_or(LogFormatError::BadStream {
        offset: at,
        stream: h[0],
    })?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&h[1..9]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&h[9..13]);
    Ok((stream, i64::from_le_bytes(ts), u32::from_le_bytes(len) as usize))
}

fn offset_by(e: LogFormatError, base: usize) -> LogFormatError {
    match e {
        LogFormatError::BadStream { offset, stream } => LogFormatError::BadStream {
            offset: offset + base,
            stream,
        },
        LogFormatError::Truncated { offset, have, need } => LogFormatError::Truncated {
            offset: offset + base,
            have,
            need,
        },
        e => e,
    }
}

/// The last bytes of a stream, kept as they arrive (a ring of at most `cap` bytes).
#[derive(Debug, Clone)]
pub struct TailBuf {
    cap: usize,
    buf: std::collections::VecDeque<u8>,
}

impl TailBuf {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: std::collections::VecDeque::with_capacity(cap.min(1 << 16)),
        }
    }
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let over = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.buf.extend(bytes);
    }
    /// The tail as text: see [`tail_text`].
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        tail_text(&[a, b].concat(), self.cap)
    }
}

/// The last at most `max` bytes of `bytes` as text: invalid UTF-8 becomes U+FFFD, a character
/// cut by the window's start is dropped, and the result (replacement characters are 3 bytes)
/// is cut again at a character boundary so it never exceeds `max` bytes.
pub fn tail_text(bytes: &[u8], max: usize) -> String {
    let mut window = &bytes[bytes.len().saturating_sub(max)..];
    if window.len() < bytes.len() {
        // Continuation bytes at the start belong to a character the window cut.
        let skip = window.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count();
        window = &window[skip..];
    }
    let text = String::from_utf8_lossy(window);
    last_chars(&text, max).to_string()
}

/// The last at most `max` bytes of `s`, starting at a character boundary.
pub fn last_chars(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_byte_exact_with_any_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let mut part = MAGIC.to_vec();
        append_record(&mut part, Stream::Stdout, 1_700_000_000_123, b"line 1\n");
        append_record(&mut part, Stream::Stderr, -1, &all);
        append_record(&mut part, Stream::Stdout, 7, b"");
        append_record(&mut part, Stream::Stdout, 8, b"\xff\xfe no newline");
        let recs = decode_part(&part).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1].stream, Stream::Stderr);
        assert_eq!(recs[1].ts_ms, -1);
        assert_eq!(recs[1].bytes, all);
        let stdout: Vec<u8> = recs
            .iter()
            .filter(|r| r.stream == Stream::Stdout)
            .flat_map(|r| r.bytes.clone())
            .collect();
        assert_eq!(stdout, b"line 1\n\xff\xfe no newline");
        assert_eq!(complete_len(&part[MAGIC.len()..]), part.len() - MAGIC.len());
    }

    #[test]
    fn a_bad_or_cut_part_is_an_error_that_says_where() {
        assert_eq!(decode_part(b"gzip?").unwrap_err(), LogFormatError::BadMagic);
        let mut part = MAGIC.to_vec();
        append_record(&mut part, Stream::Stdout, 1, b"hello");
        let whole = part.len();
        append_record(&mut part, Stream::Stderr, 2, b"world");
        let cut = &part[..part.len() - 2];
        let e = decode_part(cut).unwrap_err();
        assert!(
            matches!(e, LogFormatError::Truncated { offset, .. } if offset == whole),
            "{e}"
        );
        // a crash mid-record: the whole records before it are kept
        assert_eq!(complete_len(&cut[MAGIC.len()..]), whole - MAGIC.len());
        assert_eq!(complete_len(&cut[MAGIC.len()..MAGIC.len() + 5]), 0);
        let mut bad = MAGIC.to_vec();
        append_record(&mut bad, Stream::Stdout, 1, b"x");
        bad[MAGIC.len()] = 9;
        assert!(decode_part(&bad).unwrap_err().to_string().contains("unknown stream 9"));
    }

    #[test]
    fn tails_keep_the_last_bytes_cut_at_a_character() {
        let mut t = TailBuf::new(8);
        t.push(b"0123456789");
        assert_eq!(t.text(), "23456789");
        t.push(b"ab");
        assert_eq!(t.text(), "456789ab");
        // "é" is 2 bytes: a window starting inside it drops its second byte
        let mut t = TailBuf::new(5);
        t.push("xé1234".as_bytes()); // x c3 a9 1 2 3 4 → window a9 1 2 3 4
        assert_eq!(t.text(), "1234");
        // invalid bytes become U+FFFD, and the text still fits the cap
        let s = tail_text(b"\xff\xff\xffab", 5);
        assert!(s.len() <= 5 && s.ends_with("ab"), "{s:?}");
        assert_eq!(tail_text(b"short", 64), "short");
        assert_eq!(last_chars("aé", 1), "");
        assert_eq!(last_chars("aé", 2), "é");
    }
}
