//! Writing command output to stdout, and aligned text tables.
//!
//! `println!` panics when stdout is a closed pipe (`shardcron job ls | head`);
//! a command-line tool should just stop quietly instead, so all output goes
//! through [`print()`], which treats a broken pipe as success.

use std::io::Write;

use crate::exit::CliError;

/// Writes `text` to stdout (adding a final newline if missing). A closed pipe
/// is not an error.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::failure(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Pretty JSON of `value`, for output.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure(format!("cannot encode JSON: {e}")))
}

/// Renders rows under headers, columns left-aligned and separated by two
/// spaces; trailing spaces are trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            } else {
                widths.push(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A Unix-ms instant as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// A duration in ms as a short human string (`850ms`, `12.3s`, `4m 2s`).
pub fn short_duration_ms(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", short_duration_ms(-ms));
    }
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let secs = ms / 1000;
        humantime::format_duration(std::time::Duration::from_secs(secs as u64)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["ID", "N"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long-id".into(), "22".into()],
            ],
        );
        assert_eq!(text, "ID       N\na        1\nlong-id  22\n");
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339_ms(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(short_duration_ms(850), "850ms");
        assert_eq!(short_duration_ms(12_340), "12.3s");
        assert_eq!(short_duration_ms(242_000), "4m 2s");
    }
}
