//! The text of one entry of a job's run ring (`{ns}:jobruns`).
//!
//! The rings are most of the Redis memory of a busy namespace: every job
//! keeps its last [`super::JOB_RUN_HISTORY_CAP`] runs, so 10,000
//! every-second jobs hold a million entries. An entry used to be
//! `number|<RunRecord JSON>`, about 240 bytes, most of them field names and
//! values the field already says (the job id is in the field, the fire id
//! is `job@scheduled`). An entry is now written compact:
//!
//! ```text
//! number|1|scheduled|started-scheduled|finished-started|attempts|outcome|token|shard|[node, error, detail, fire]
//! ```
//!
//! The instants after the first are differences (a few digits), the
//! outcome is its stable name, and the strings a run may carry (node id,
//! error, detail, and the fire id when it is not `job@scheduled`, as for a
//! broadcast fire) are one JSON array at the end, its trailing nulls left
//! out: the array is the only part that may hold a `|`, and it is last.
//! About 70 bytes for a plain run. Entries written by earlier versions
//! (`number|{...}`) are still read.
//!
//! The namespace's list of recent runs (`{ns}:runs`) holds the same entry
//! behind its job id: `job|number|1|...` ([`listed`]). It used to hold the
//! record's JSON, about 250 bytes a fire that Redis parsed, copied into the
//! list and, ten thousand runs later, freed again, and that the writer
//! serialized once more next to the ring entry it had already made. A job
//! id has no `|` (`validate_job_id`) and never starts with `{`, so the
//! JSON records earlier versions listed still read ([`decode_listed`]).

use serde_json::Value;

use crate::model::{RunOutcome, RunRecord};

/// The format tag of a compact entry.
const COMPACT: &str = "1";

/// Every outcome, to read one back from its name.
const OUTCOMES: [RunOutcome; 8] = [
    RunOutcome::Succeeded,
    RunOutcome::Failed,
    RunOutcome::TimedOut,
    RunOutcome::Panicked,
    RunOutcome::Cancelled,
    RunOutcome::SkippedOverlap,
    RunOutcome::Misfired,
    RunOutcome::UnknownHandler,
];

/// The fire id of a plain run of `job_id` at `scheduled_ms`.
fn plain_fire_id(job_id: &str, scheduled_ms: i64) -> String {
    format!("{job_id}@{scheduled_ms}")
}

/// The entry of `run`, run number `number` of its job.
pub fn encode(number: u64, run: &RunRecord) -> String {
    let fire = (run.fire_id != plain_fire_id(&run.job_id, run.scheduled_ms))
        .then_some(run.fire_id.as_str());
    let mut tail: Vec<Option<&str>> = vec![
        Some(run.node_id.as_str()),
        run.error.as_deref(),
        run.detail.as_deref(),
        fire,
    ];
    while tail.len() > 1 && tail.last() == Some(&None) {
        tail.pop();
    }
    // A list of optional strings always serializes.
    let tail = serde_json::to_string(&tail).unwrap_or_else(|_| "[]".to_owned());
    format!(
        "{number}|{COMPACT}|{}|{}|{}|{}|{}|{}|{}|{tail}",
        run.scheduled_ms,
        run.started_ms - run.scheduled_ms,
        run.finished_ms - run.started_ms,
        run.attempts,
        run.outcome.as_str(),
        run.fencing_token,
        run.shard,
    )
}

/// The run number the entry `text` starts with (both the compact form and
/// the JSON one of earlier versions start `number|`), read without decoding
/// the rest.
pub fn number(text: &str) -> Option<u64> {
    text.split_once('|').and_then(|(n, _)| n.parse().ok())
}

/// Reads the entry `text` of a ring of `job_id`: its run number and run.
/// Accepts both the compact form and the JSON one of earlier versions.
pub fn decode(job_id: &str, text: &str) -> Result<(u64, RunRecord), String> {
    let (number, rest) = text
        .split_once('|')
        .ok_or_else(|| "no run number".to_owned())?;
    let number = number
        .parse::<u64>()
        .map_err(|e| format!("run number {number:?}: {e}"))?;
    if rest.starts_with('{') {
        let run = serde_json::from_str(rest).map_err(|e| e.to_string())?;
        return Ok((number, run));
    }
    let parts: Vec<&str> = rest.splitn(9, '|').collect();
    let [tag, scheduled, started, finished, attempts, outcome, token, shard, tail] = parts[..]
    else {
        return Err(format!("{} fields, not 9", parts.len()));
    };
    if tag != COMPACT {
        return Err(format!("unknown entry format {tag:?}"));
    }
    let int = |what: &str, v: &str| -> Result<i64, String> {
        v.parse::<i64>().map_err(|e| format!("{what} {v:?}: {e}"))
    };
    let scheduled_ms = int("scheduled", scheduled)?;
    let started_ms = scheduled_ms + int("start", started)?;
    let finished_ms = started_ms + int("finish", finished)?;
    let outcome = OUTCOMES
        .into_iter()
        .find(|o| o.as_str() == outcome)
        .ok_or_else(|| format!("unknown outcome {outcome:?}"))?;
    let tail: Vec<Value> = serde_json::from_str(tail).map_err(|e| format!("tail: {e}"))?;
    let text_at = |i: usize| tail.get(i).and_then(Value::as_str).map(str::to_owned);
    Ok((
        number,
        RunRecord {
            job_id: job_id.to_owned(),
            fire_id: text_at(3).unwrap_or_else(|| plain_fire_id(job_id, scheduled_ms)),
            node_id: text_at(0).ok_or_else(|| "no node id".to_owned())?,
            shard: shard.parse().map_err(|e| format!("shard {shard:?}: {e}"))?,
            fencing_token: token.parse().map_err(|e| format!("token {token:?}: {e}"))?,
            scheduled_ms,
            started_ms,
            finished_ms,
            attempts: attempts
                .parse()
                .map_err(|e| format!("attempts {attempts:?}: {e}"))?,
            outcome,
            error: text_at(1),
            detail: text_at(2),
        },
    ))
}

/// The entry of the namespace's run list for ring entry `entry` of a run
/// of `job_id`: `job|entry`.
pub fn listed(job_id: &str, entry: &str) -> String {
    let mut text = String::with_capacity(job_id.len() + 1 + entry.len());
    text.push_str(job_id);
    text.push('|');
    text.push_str(entry);
    text
}

/// Reads an entry of the namespace's run list: [`listed`]'s form, or the
/// record's JSON that earlier versions listed.
pub fn decode_listed(text: &str) -> Result<RunRecord, String> {
    if text.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let (job_id, entry) = text.split_once('|').ok_or_else(|| "no job id".to_owned())?;
    decode(job_id, entry).map(|(_, run)| run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunRecord {
        RunRecord {
            job_id: "job-7".into(),
            fire_id: "job-7@1796541581000".into(),
            node_id: "w1".into(),
            shard: 76,
            fencing_token: 1_796_541_578_096_522,
            scheduled_ms: 1_796_541_581_000,
            started_ms: 1_796_541_581_002,
            finished_ms: 1_796_541_581_950,
            attempts: 1,
            outcome: RunOutcome::Succeeded,
            error: None,
            detail: None,
        }
    }

    #[test]
    fn a_plain_run_is_short_and_reads_back() {
        let entry = encode(12, &run());
        assert_eq!(
            entry,
            "12|1|1796541581000|2|948|1|succeeded|1796541578096522|76|[\"w1\"]"
        );
        let json = serde_json::to_string(&run()).expect("json");
        assert!(entry.len() * 3 < json.len() + 3, "{entry} vs {json}");
        assert_eq!(decode("job-7", &entry), Ok((12, run())));
    }

    #[test]
    fn strings_with_bars_and_other_fire_ids_read_back() {
        for outcome in OUTCOMES {
            let mut r = run();
            r.outcome = outcome;
            r.error = Some("exit 1 | \"boom\"\nnext line".into());
            r.detail = (outcome == RunOutcome::Failed).then(|| "tail|of|output".into());
            r.fire_id = "job-7@1796541581000/w|1".into();
            r.node_id = "w|1".into();
            r.started_ms = r.scheduled_ms - 5;
            r.finished_ms = r.started_ms;
            assert_eq!(decode("job-7", &encode(3, &r)), Ok((3, r)));
        }
    }

    #[test]
    fn entries_of_earlier_versions_still_read() {
        let json = serde_json::to_string(&run()).expect("json");
        assert_eq!(decode("job-7", &format!("4|{json}")), Ok((4, run())));
    }

    #[test]
    fn a_listed_entry_is_the_ring_entry_behind_its_job_and_reads_back() {
        let entry = encode(12, &run());
        let text = listed("job-7", &entry);
        assert_eq!(text, format!("job-7|{entry}"));
        assert_eq!(decode_listed(&text), Ok(run()));
        let json = serde_json::to_string(&run()).expect("json");
        assert!(text.len() * 3 < json.len() + 10, "{text} vs {json}");
        let mut other = run();
        other.job_id = "a/b:c.d_e-f".into();
        other.fire_id = "a/b:c.d_e-f@1796541581000".into();
        other.error = Some("x|y".into());
        assert_eq!(
            decode_listed(&listed(&other.job_id, &encode(0, &other))),
            Ok(other)
        );
    }

    #[test]
    fn records_listed_by_earlier_versions_still_read() {
        let json = serde_json::to_string(&run()).expect("json");
        assert_eq!(decode_listed(&json), Ok(run()));
    }

    #[test]
    fn damaged_listed_entries_are_errors() {
        for (text, names) in [
            ("job-7", "no job id"),
            ("job-7|x|1", "run number"),
            ("{\"job_id\":", "EOF"),
        ] {
            let err = decode_listed(text).expect_err(text);
            assert!(err.contains(names), "{text}: {err}");
        }
    }

    #[test]
    fn damaged_entries_are_errors_naming_the_part() {
        for (entry, names) in [
            ("x|1|2", "run number"),
            ("5", "no run number"),
            ("5|1|1|2|3", "fields"),
            ("5|2|1|2|3|1|succeeded|9|1|[\"w\"]", "format"),
            ("5|1|1|2|3|1|exploded|9|1|[\"w\"]", "outcome"),
            ("5|1|1|2|3|1|succeeded|9|1|[]", "node id"),
            ("5|1|1|b|3|1|succeeded|9|1|[\"w\"]", "start"),
            ("5|1|1|2|3|1|succeeded|9|1|[\"w\"", "tail"),
        ] {
            let err = decode("j", entry).expect_err(entry);
            assert!(err.contains(names), "{entry}: {err}");
        }
    }
}
