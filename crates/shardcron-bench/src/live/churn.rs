//! The churn timeline of `live --churn`: which worker leaves, crashes or
//! joins, and when.
//!
//! Membership changes are where a scheduler like shardcron can lose or
//! duplicate fires, so the live benchmark replays a scripted timeline while
//! it measures. The timeline is text on the command line —
//! `10s:leave:w2,18s:join:w2,25s:crash:w3` — with offsets from the start of
//! the measured window. Parsing is separate from [`resolve`], which checks
//! the script against the fleet (a worker must be running to leave or crash,
//! stopped to join, and at least one worker must always remain): the parser
//! is pure and unit-tested, and bad scripts fail before Redis is started.
//!
//! Initial workers are named `w0 .. w(N-1)`; a name in the script is a
//! worker name, its node id is `bench-<name>`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// What happens to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnAction {
    /// Graceful leave: the worker's shutdown future resolves, so it stops
    /// firing, deregisters and releases its leases.
    Leave,
    /// Crash: the worker's task is aborted; nothing is released or
    /// deregistered, peers wait for the member and lease TTLs.
    Crash,
    /// A new worker (or a new instance of a stopped one) starts.
    Join,
}

impl ChurnAction {
    /// The word used in a churn spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ChurnAction::Leave => "leave",
            ChurnAction::Crash => "crash",
            ChurnAction::Join => "join",
        }
    }

    /// What the time until the fleet settles is called for this action:
    /// `takeover` after a crash, `handoff` otherwise.
    pub fn settle_kind(self) -> &'static str {
        match self {
            ChurnAction::Crash => "takeover",
            ChurnAction::Leave | ChurnAction::Join => "handoff",
        }
    }
}

impl FromStr for ChurnAction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "leave" => Ok(ChurnAction::Leave),
            "crash" => Ok(ChurnAction::Crash),
            "join" => Ok(ChurnAction::Join),
            other => Err(format!(
                "unknown action {other:?} (expected leave, crash or join)"
            )),
        }
    }
}

/// One scripted membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChurnEvent {
    /// Offset from the start of the measured window.
    #[serde(rename = "at_ms", serialize_with = "as_millis")]
    pub at: Duration,
    /// What happens.
    pub action: ChurnAction,
    /// Worker name (`w2`); its node id is [`node_id`]`(worker)`.
    pub worker: String,
}

fn as_millis<S: serde::Serializer>(at: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(at.as_millis()).unwrap_or(u64::MAX))
}

impl fmt::Display for ChurnEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.worker)
    }
}

/// The `--churn` option before it is checked against the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChurnSpec {
    /// `default`: the timeline of [`default_timeline`].
    Default,
    /// An explicit list of events, in the order given.
    Events(Vec<ChurnEvent>),
}

/// Node id of worker `name`.
pub fn node_id(name: &str) -> String {
    format!("bench-{name}")
}

/// Name of the `index`-th initial worker.
pub fn initial_name(index: u32) -> String {
    format!("w{index}")
}

/// Longest worker name accepted.
const MAX_NAME: usize = 64;

fn check_name(name: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(valid_char) {
        return Err(format!(
            "worker name {name:?}: use 1-{MAX_NAME} characters of A-Z a-z 0-9 _ - ."
        ));
    }
    Ok(())
}

/// Parses `--churn`: `default`, or comma-separated `OFFSET:ACTION:WORKER`
/// items where OFFSET is a humantime duration (`10s`, `1m 30s`, `2500ms`),
/// ACTION is `leave`, `crash` or `join` and WORKER a worker name (`w2`).
/// Events are kept in the order given; [`resolve`] sorts them by offset.
pub fn parse_churn(text: &str) -> Result<ChurnSpec, String> {
    if text.trim().eq_ignore_ascii_case("default") {
        return Ok(ChurnSpec::Default);
    }
    let mut events = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut parts = item.splitn(3, ':');
        let (Some(offset), Some(action), Some(worker)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{item:?}: expected OFFSET:ACTION:WORKER, e.g. 10s:leave:w2"
            ));
        };
        let at = humantime::parse_duration(offset.trim())
            .map_err(|e| format!("{item:?}: offset {offset:?}: {e}"))?;
        let action = action.parse().map_err(|e| format!("{item:?}: {e}"))?;
        let worker = worker.trim().to_owned();
        check_name(&worker).map_err(|e| format!("{item:?}: {e}"))?;
        events.push(ChurnEvent { at, action, worker });
    }
    if events.is_empty() {
        return Err("empty churn timeline (use `default` or e.g. 10s:leave:w2)".to_owned());
    }
    Ok(ChurnSpec::Events(events))
}

/// The `default` timeline for `workers` initial workers over a window of
/// `duration`: at 20 % of the window `w(N-2)` leaves gracefully, at 36 % it
/// rejoins, at 50 % `w(N-1)` crashes, at 66 % it rejoins (a new instance
/// under the same node id), at 80 % a new worker `wN` joins. Offsets are
/// rounded to whole seconds, so with a 50 s window this is
/// `10s:leave:w2,18s:join:w2,25s:crash:w3,33s:join:w3,40s:join:w4` for four
/// workers. Needs at least two workers.
pub fn default_timeline(workers: u32, duration: Duration) -> Result<Vec<ChurnEvent>, String> {
    if workers < 2 {
        return Err("--churn default needs --workers 2 or more".to_owned());
    }
    let at = |percent: u64| {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX) / 100 * percent;
        Duration::from_secs(((ms + 500) / 1000).max(1))
    };
    let leaver = initial_name(workers - 2);
    let crasher = initial_name(workers - 1);
    let event = |percent, action, worker: &String| ChurnEvent {
        at: at(percent),
        action,
        worker: worker.clone(),
    };
    Ok(vec![
        event(20, ChurnAction::Leave, &leaver),
        event(36, ChurnAction::Join, &leaver),
        event(50, ChurnAction::Crash, &crasher),
        event(66, ChurnAction::Join, &crasher),
        event(80, ChurnAction::Join, &initial_name(workers)),
    ])
}

/// Turns a [`ChurnSpec`] into the timeline for a fleet of `workers` initial
/// workers and a window of `duration`: events sorted by offset (stable),
/// every offset inside the window, every action possible when it happens
/// and at least one worker running at all times.
pub fn resolve(
    spec: &ChurnSpec,
    workers: u32,
    duration: Duration,
) -> Result<Vec<ChurnEvent>, String> {
    let mut events = match spec {
        ChurnSpec::Default => default_timeline(workers, duration)?,
        ChurnSpec::Events(events) => events.clone(),
    };
    events.sort_by_key(|e| e.at);
    let mut live: BTreeSet<String> = (0..workers).map(initial_name).collect();
    for event in &events {
        if event.at.is_zero() || event.at >= duration {
            return Err(format!(
                "{} at {:?} is outside the measured window (0, {:?})",
                event, event.at, duration
            ));
        }
        match event.action {
            ChurnAction::Join => {
                if !live.insert(event.worker.clone()) {
                    return Err(format!(
                        "join {} at {:?}: that worker is already running",
                        event.worker, event.at
                    ));
                }
            }
            ChurnAction::Leave | ChurnAction::Crash => {
                if !live.remove(&event.worker) {
                    return Err(format!(
                        "{} at {:?}: that worker is not running (initial workers are w0..w{})",
                        event,
                        event.at,
                        workers.saturating_sub(1)
                    ));
                }
                if live.is_empty() {
                    return Err(format!(
                        "{} at {:?} would leave no worker running",
                        event, event.at
                    ));
                }
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ev(at: u64, action: ChurnAction, worker: &str) -> ChurnEvent {
        ChurnEvent {
            at: secs(at),
            action,
            worker: worker.to_owned(),
        }
    }

    #[test]
    fn parses_the_documented_example() {
        let spec = parse_churn("10s:leave:w2, 18s:join:w2,25s:crash:w3,33s:JOIN:w3,40s:join:w4");
        let expected = vec![
            ev(10, ChurnAction::Leave, "w2"),
            ev(18, ChurnAction::Join, "w2"),
            ev(25, ChurnAction::Crash, "w3"),
            ev(33, ChurnAction::Join, "w3"),
            ev(40, ChurnAction::Join, "w4"),
        ];
        assert_eq!(spec, Ok(ChurnSpec::Events(expected)));
    }

    #[test]
    fn parses_default_and_other_offsets() {
        assert_eq!(parse_churn(" Default "), Ok(ChurnSpec::Default));
        let Ok(ChurnSpec::Events(events)) = parse_churn("1m 30s:crash:w0,2500ms:leave:node.b_1")
        else {
            panic!("should parse");
        };
        assert_eq!(events[0].at, secs(90));
        assert_eq!(events[1].at, Duration::from_millis(2500));
        assert_eq!(events[1].worker, "node.b_1");
    }

    #[test]
    fn rejects_malformed_items() {
        for bad in [
            "",
            " , ",
            "10s:leave",
            "10s",
            "ten:leave:w1",
            "10s:restart:w1",
            "10s:leave:",
            "10s:leave:w/1",
            "10s:leave:w 1",
            "10s:leave:w1:extra",
        ] {
            assert!(parse_churn(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("1s:join:{}", "x".repeat(MAX_NAME + 1));
        assert!(parse_churn(&long).is_err());
    }

    #[test]
    fn default_timeline_scales_with_window_and_fleet() {
        let events = default_timeline(4, secs(50)).unwrap_or_default();
        let Ok(ChurnSpec::Events(expected)) =
            parse_churn("10s:leave:w2,18s:join:w2,25s:crash:w3,33s:join:w3,40s:join:w4")
        else {
            panic!("should parse");
        };
        assert_eq!(events, expected);
        let short = default_timeline(2, secs(10)).unwrap_or_default();
        let offsets: Vec<u64> = short.iter().map(|e| e.at.as_secs()).collect();
        assert_eq!(offsets, vec![2, 4, 5, 7, 8]);
        assert_eq!(short[0].worker, "w0");
        assert_eq!(short[2].worker, "w1");
        assert_eq!(short[4].worker, "w2");
        assert!(default_timeline(1, secs(50)).is_err());
        assert!(resolve(&ChurnSpec::Default, 3, secs(60)).is_ok());
    }

    #[test]
    fn resolve_sorts_and_checks_the_script() {
        let spec = |text: &str| parse_churn(text).unwrap_or(ChurnSpec::Events(Vec::new()));
        let sorted = resolve(&spec("20s:join:w1,10s:leave:w1"), 3, secs(30));
        assert_eq!(
            sorted.map(|e| e.iter().map(|e| e.at.as_secs()).collect::<Vec<_>>()),
            Ok(vec![10, 20])
        );
        // Same offset: order as given.
        let same = resolve(&spec("5s:crash:w0,5s:join:w0"), 2, secs(30));
        assert_eq!(
            same.map(|e| e.iter().map(|e| e.action).collect::<Vec<_>>()),
            Ok(vec![ChurnAction::Crash, ChurnAction::Join])
        );
        for (bad, workers) in [
            ("10s:leave:w3", 3),              // no such worker
            ("10s:join:w1", 3),               // already running
            ("10s:leave:w0,12s:crash:w0", 2), // not running any more
            ("10s:leave:w0", 1),              // nobody left
            ("30s:leave:w0", 3),              // at the window's end
            ("0s:leave:w0", 3),               // at its start
        ] {
            assert!(resolve(&spec(bad), workers, secs(30)).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(node_id("w3"), "bench-w3");
        assert_eq!(initial_name(0), "w0");
        assert_eq!(ChurnAction::Crash.settle_kind(), "takeover");
        assert_eq!(ChurnAction::Join.settle_kind(), "handoff");
        assert_eq!(ev(1, ChurnAction::Leave, "w1").to_string(), "leave w1");
    }
}
