//! What `kubectl logs` options do to a CRI log file, without I/O: the caller reads
//! bytes, this module decides which records are shown and how they are printed.
//!
//! A CRI log file is one record per line, `<RFC3339Nano> <stdout|stderr> <P|F> <text>`;
//! `P` records are pieces of a long line that the next `F` record ends. `tailLines`
//! counts whole lines (an `F` record and the `P` records before it), as the kubelet does.

use jiff::Timestamp;

use crate::cri::{LogLine, parse_log_line};

/// The filters and formatting of one log request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Only the last N whole lines of what exists when the request arrives.
    pub tail_lines: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each record with its timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the request's options: `sinceTime` wins over `sinceSeconds` (measured
    /// from `now`), negative counts are refused as the apiserver does.
    pub fn from_request(
        req: &bus_schema::podstream::LogRequest,
        now: Timestamp,
    ) -> Result<LogOptions, String> {
        let tail_lines = match req.tail_lines {
            Some(n) if n < 0 => return Err(format!("tailLines must be >= 0, got {n}")),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let limit_bytes = match req.limit_bytes {
            Some(n) if n <= 0 => return Err(format!("limitBytes must be > 0, got {n}")),
            Some(n) => Some(n as u64),
            None => None,
        };
        let since = match (&req.since_time, req.since_seconds) {
            (Some(t), _) => Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime {t:?} is not an RFC 3339 time: {e}"))?,
            ),
            (None, Some(s)) if s <= 0 => {
                return Err(format!("sinceSeconds must be > 0, got {s}"));
            }
            (None, Some(s)) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(s))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            tail_lines,
            since,
            timestamps: req.timestamps,
            limit_bytes,
        })
    }

    /// Whether a record passes the `since` filter (unparseable times pass: better a
    /// line too many than a silently lost one).
    fn keeps(&self, record: &LogLine<'_>) -> bool {
        match (&self.since, record.time.parse::<Timestamp>()) {
            (Some(since), Ok(t)) => t >= *since,
            _ => true,
        }
    }
}

/// Renders the records kept by `options` (no tail, no limit: see [`Printer`]).
fn render(record: &LogLine<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(record.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(record.text.as_bytes());
    if record.full {
        out.push(b'\n');
    }
}

/// Index (into `lines`) of the first record to show for `tail` whole lines: the start of
/// the `tail`-th last line, counting an unfinished trailing `P` run as a line.
pub fn tail_start(lines: &[&str], tail: usize) -> usize {
    if tail == 0 {
        return lines.len();
    }
    let mut seen = 0;
    for i in (0..lines.len()).rev() {
        // A line starts right after the previous line's end (or at the file start).
        let starts_line = i == 0 || parse_log_line(lines[i - 1]).is_none_or(|r| r.full);
        if starts_line {
            seen += 1;
            if seen == tail {
                return i;
            }
        }
    }
    0
}

/// Turns CRI records into output bytes, keeping state across calls (the byte budget
/// of `limitBytes`), so the initial read and a followed file use the same rules.
#[derive(Debug, Clone)]
pub struct Printer {
    options: LogOptions,
    written: u64,
}

impl Printer {
    /// A printer for one request.
    pub fn new(options: LogOptions) -> Printer {
        Printer {
            options,
            written: 0,
        }
    }

    /// Whether `limitBytes` is used up (the stream should end).
    pub fn exhausted(&self) -> bool {
        self.options.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Output for complete record lines (without their `\n`). Lines that are not CRI
    /// records are skipped.
    pub fn print(&mut self, lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            if self.exhausted() {
                break;
            }
            let Some(record) = parse_log_line(line) else {
                continue;
            };
            if !self.options.keeps(&record) {
                continue;
            }
            let start = out.len();
            render(&record, self.options.timestamps, &mut out);
            let len = (out.len() - start) as u64;
            if let Some(limit) = self.options.limit_bytes {
                let room = limit - self.written;
                if len > room {
                    out.truncate(start + room as usize);
                    self.written = limit;
                    break;
                }
            }
            self.written += len;
        }
        out
    }

    /// Output for the contents of a file as it is when the request arrives: applies
    /// `tailLines`, then [`Printer::print`]. Returns the output and how many bytes of
    /// `content` were consumed (a trailing record without its `\n` is left for later).
    pub fn print_initial(&mut self, content: &[u8]) -> (Vec<u8>, usize) {
        let (lines, consumed) = complete_lines(content);
        // The tail counts lines that pass the other filters, as the kubelet's does.
        let kept: Vec<&str> = lines
            .into_iter()
            .filter(|l| parse_log_line(l).is_some_and(|r| self.options.keeps(&r)))
            .collect();
        let from = self
            .options
            .tail_lines
            .map_or(0, |tail| tail_start(&kept, tail));
        (self.print(&kept[from..]), consumed)
    }
}

/// Splits `content` into complete lines (lossy UTF-8) and the number of bytes they
/// span; a last line without `\n` is not complete yet (the runtime is writing it).
pub fn complete_lines(content: &[u8]) -> (Vec<&str>, usize) {
    let Some(end) = content.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), 0);
    };
    let lines = content[..end]
        .split(|b| *b == b'\n')
        .map(|l| std::str::from_utf8(l).unwrap_or(""))
        .collect();
    (lines, end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
2026-11-23T08:00:00.000000001Z stdout F one
2026-11-23T08:00:01Z stderr F two
2026-11-23T08:00:02Z stdout P thr
2026-11-23T08:00:02.5Z stdout F ee
garbage line
2026-11-23T08:00:03Z stdout F four
";

    fn check(options: LogOptions, want: &str) {
        let mut printer = Printer::new(options.clone());
        let (out, consumed) = printer.print_initial(FILE.as_bytes());
        assert_eq!(consumed, FILE.len());
        assert_eq!(String::from_utf8(out).unwrap(), want, "{options:?}");
    }

    fn ts(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn options_shape_the_output() {
        check(LogOptions::default(), "one\ntwo\nthree\nfour\n");
        let tail = |n| LogOptions {
            tail_lines: Some(n),
            ..LogOptions::default()
        };
        check(tail(0), "");
        check(tail(1), "four\n");
        check(tail(2), "three\nfour\n");
        check(tail(3), "two\nthree\nfour\n");
        check(tail(10), "one\ntwo\nthree\nfour\n");
        check(
            LogOptions {
                timestamps: true,
                tail_lines: Some(2),
                ..LogOptions::default()
            },
            "2026-11-23T08:00:02Z thr2026-11-23T08:00:02.5Z ee\n2026-11-23T08:00:03Z four\n",
        );
        check(
            LogOptions {
                since: ts("2026-11-23T08:00:01Z"),
                ..LogOptions::default()
            },
            "two\nthree\nfour\n",
        );
        check(
            LogOptions {
                since: ts("2026-11-23T08:00:01Z"),
                tail_lines: Some(1),
                ..LogOptions::default()
            },
            "four\n",
        );
        check(
            LogOptions {
                limit_bytes: Some(6),
                ..LogOptions::default()
            },
            "one\ntw",
        );
    }

    #[test]
    fn limit_holds_across_calls() {
        let mut printer = Printer::new(LogOptions {
            limit_bytes: Some(5),
            ..LogOptions::default()
        });
        assert_eq!(printer.print(&["t stdout F abc"]), b"abc\n");
        assert!(!printer.exhausted());
        assert_eq!(printer.print(&["t stdout F xyz"]), b"x");
        assert!(printer.exhausted());
        assert_eq!(printer.print(&["t stdout F more"]), b"");
    }

    #[test]
    fn unfinished_last_line_waits() {
        let (lines, consumed) = complete_lines(b"t stdout F a\nt stdout F b");
        assert_eq!(lines, vec!["t stdout F a"]);
        assert_eq!(consumed, 13);
        assert_eq!(complete_lines(b"partial").1, 0);
    }

    #[test]
    fn request_options() {
        use bus_schema::podstream::LogRequest;
        let now: Timestamp = "2026-11-23T08:00:10Z".parse().unwrap();
        let opts = |req: LogRequest| LogOptions::from_request(&req, now);
        assert_eq!(
            opts(LogRequest {
                since_seconds: Some(10),
                tail_lines: Some(2),
                limit_bytes: Some(100),
                timestamps: true,
                ..LogRequest::default()
            })
            .unwrap(),
            LogOptions {
                tail_lines: Some(2),
                since: ts("2026-11-23T08:00:00Z"),
                timestamps: true,
                limit_bytes: Some(100),
            }
        );
        assert_eq!(
            opts(LogRequest {
                since_seconds: Some(10),
                since_time: Some("2026-01-01T00:00:00Z".into()),
                ..LogRequest::default()
            })
            .unwrap()
            .since,
            ts("2026-01-01T00:00:00Z")
        );
        for bad in [
            LogRequest {
                tail_lines: Some(-1),
                ..LogRequest::default()
            },
            LogRequest {
                limit_bytes: Some(0),
                ..LogRequest::default()
            },
            LogRequest {
                since_seconds: Some(0),
                ..LogRequest::default()
            },
            LogRequest {
                since_time: Some("yesterday".into()),
                ..LogRequest::default()
            },
        ] {
            assert!(opts(bad).is_err());
        }
    }
}
