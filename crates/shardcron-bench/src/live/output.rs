//! What `live` reports: the [`LiveReport`] (written to `live.json`), the
//! text printed on stdout (the summary and the per-event churn table, which
//! is what goes into `docs/BENCHMARKS.md`), `live.csv` (one row per churn
//! event) and `lateness.csv` (one row per second of the window).
//!
//! Kept apart from the run itself so the formats can be read and changed
//! without touching the fleet code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::audit::Audit;
use super::churn::ChurnEvent;
use super::etcd::EtcdReport;
use super::per_node::NodeFires;
use super::pg::PgReport;
use super::timeline::{SecondLateness, SpanLateness, LATE_MS};
use crate::report::csv_field;

/// One churn event and what it did to the fleet.
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    /// The scripted event (offset, action, worker).
    #[serde(flatten)]
    pub event: ChurnEvent,
    /// `handoff` (leave, join) or `takeover` (crash).
    pub kind: &'static str,
    /// When it was actually applied, ms since the window start.
    pub started_offset_ms: i64,
    /// Time from the event until every shard was held by its expected
    /// owner again, ms; `None` if that never happened.
    pub settle_ms: Option<i64>,
    /// Another event happened before this one settled (both then settle at
    /// the same instant).
    pub overlapped: bool,
    /// Runs scheduled from the event's instant (`at_ms`) until it settled.
    pub while_settling: SpanLateness,
    /// Runs scheduled from the event's instant until the next event's (or
    /// the window end).
    pub until_next_event: SpanLateness,
    /// Missed fires claimed by the crashed instance before it died.
    pub lost_with_crash: u64,
    /// Distinct scheduled instants among those.
    pub lost_instants: u64,
    /// Lease holder (`node/instance`) of the crashed instance, when known.
    pub crashed_holder: Option<String>,
}

/// Everything `live` measured (written to `live.json`).
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    /// Workers in the fleet at the start.
    pub workers: u32,
    /// Workers running at the end of the run (after churn).
    pub workers_at_end: Vec<String>,
    /// Jobs registered.
    pub jobs: u32,
    /// Period of every job, milliseconds (`--every`; unused with `--schedule`).
    pub every_ms: i64,
    /// The schedule every job shares.
    pub schedule: String,
    /// Shard count (160 virtual nodes).
    pub shards: u32,
    /// Worker settings: `default` or `fast`.
    pub settings: &'static str,
    /// Heartbeat period of the workers, ms.
    pub heartbeat_ms: u64,
    /// How long before its instant each fire was claimed, ms.
    pub claim_ahead_ms: u64,
    /// Whether the workers ran observed as `shardcron worker` observes
    /// itself (`--observe`: its log subscriber and Prometheus recorder).
    pub observed: bool,
    /// Redis `used_memory` growth from registering the jobs, per job
    /// (the job, its index entry, version and weight; before any fire).
    pub redis_bytes_per_job: f64,
    /// Redis `used_memory` at the end of the measured window minus at its
    /// start, bytes: what the fires themselves leave in Redis (claim
    /// records, history) while the jobs stay the same.
    pub redis_memory_growth_bytes: i64,
    /// Redis keys at the end of the measured window minus at its start.
    pub redis_key_growth: i64,
    /// Growth of this process's resident memory while the workers loaded
    /// their jobs, MiB per 10,000 jobs (all workers run in this process).
    pub worker_rss_mib_per_10k_jobs: Option<f64>,
    /// Lease and member TTLs of the workers, ms.
    pub ttl_ms: (u64, u64),
    /// Time from starting the workers until every shard was owned, ms.
    pub settle_ms: u64,
    /// Time from settling until the fleet had caught up with the fires due
    /// while the jobs were registered (a second of runs all under 1 s
    /// late), ms; `None` if it had not after a minute.
    pub caught_up_ms: Option<u64>,
    /// How long the caught-up fleet ran before the window (`--warmup`), ms.
    pub warmup_ms: u64,
    /// Measured window `[from_ms, to_ms)`, Unix ms.
    pub window: (i64, i64),
    /// Fire audit of the window.
    pub audit: Audit,
    /// Missed fires claimed by a crashed worker before it died.
    pub lost_with_crash: u64,
    /// Missed fires a worker recorded as not run, by outcome (`misfired`,
    /// `skipped_overlap`, `cancelled`, ...): visible and counted, as the
    /// job's policies allow.
    pub recorded_not_run: std::collections::BTreeMap<String, u64>,
    /// Missed fires nothing explains (must be 0).
    pub unexplained_misses: u64,
    /// Up to ten unexplained misses, `job@ms (claim value)`.
    pub unexplained_examples: Vec<String>,
    /// Distinct fires per second in the window.
    pub fires_per_s: f64,
    /// Runs of the window per worker, and their spread.
    pub fires_per_node: NodeFires,
    /// Redis commands executed during the window, without `INFO` and
    /// without the benchmark's own lease-key reads.
    pub redis_commands: u64,
    /// `GET`s of the benchmark's own lease-key reads in the window,
    /// subtracted from `redis_commands`.
    pub bench_gets_excluded: u64,
    /// `redis_commands / fires`.
    pub commands_per_fire: f64,
    /// Commands per fire, by command.
    pub per_command_per_fire: BTreeMap<String, f64>,
    /// CPU seconds of this process (all workers) during the window.
    pub process_cpu_s: f64,
    /// `process_cpu_s` per 1,000 fires.
    pub process_cpu_s_per_1000_fires: f64,
    /// CPU seconds of redis-server during the window.
    pub redis_cpu_s: f64,
    /// `redis_cpu_s` per 1,000 fires.
    pub redis_cpu_s_per_1000_fires: f64,
    /// Fires claimed over their whole run by workers that stopped cleanly.
    pub claimed_total: u64,
    /// Claims those workers lost to another node.
    pub claim_conflicts_total: u64,
    /// Times those workers paused claiming for a full waiting line (a
    /// release of many fires claimed ahead does this briefly).
    pub claim_pauses_total: u64,
    /// Times those workers declared themselves overloaded (a waiting line
    /// full for longer than the on-time tolerance).
    pub overloads_total: u64,
    /// The churn events, in order.
    pub churn: Vec<EventReport>,
    /// Lateness per second of the window.
    pub lateness_per_second: Vec<SecondLateness>,
    /// With `--store postgres`: the server's figures (the `redis_*` and
    /// command fields are then 0 and empty). Absent on Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgReport>,
    /// With `--store etcd`: the server's figures (the `redis_*` and command
    /// fields are then 0 and empty; `redis_key_growth` counts etcd's keys).
    /// Absent on the other stores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdReport>,
}

impl LiveReport {
    /// True when no fire was duplicated, unexpected or missed without a
    /// crash to explain it.
    pub fn clean(&self) -> bool {
        self.audit.duplicates == 0 && self.audit.unexpected == 0 && self.unexplained_misses == 0
    }
}

/// The summary printed after a run.
pub fn summary_text(r: &LiveReport) -> String {
    let a = &r.audit;
    let mut out = String::new();
    let store = match (&r.postgres, &r.etcd) {
        (Some(pg), _) => format!(" (store postgres, PostgreSQL {})", pg.server_version),
        (None, Some(etcd)) => format!(" (store etcd, etcd {})", etcd.server_version),
        (None, None) => String::new(),
    };
    let _ = writeln!(
        out,
        "live{store}: {} workers, {} jobs {}, {} shards, {} settings, claim ahead {} ms{}, window {:.1} s (settled in {} ms, {}{})",
        r.workers,
        r.jobs,
        r.schedule,
        r.shards,
        r.settings,
        r.claim_ahead_ms,
        if r.observed {
            ", observed as `shardcron worker`"
        } else {
            ""
        },
        (r.window.1 - r.window.0) as f64 / 1000.0,
        r.settle_ms,
        r.caught_up_ms.map_or_else(
            || "still catching up after 60 s".to_owned(),
            |ms| format!("caught up in {ms} ms")
        ),
        if r.warmup_ms > 0 {
            format!(", then {:.0} s of warm-up", r.warmup_ms as f64 / 1000.0)
        } else {
            String::new()
        }
    );
    let rss = r
        .worker_rss_mib_per_10k_jobs
        .map_or_else(|| "unknown".to_owned(), |m| format!("{m:.1} MiB"));
    if let Some(etcd) = &r.etcd {
        let _ = writeln!(
            out,
            "memory                     {:>12.0} etcd database bytes in use per stored job, {rss} worker RSS per 10k owned jobs",
            etcd.db_bytes_per_job,
        );
        let _ = writeln!(
            out,
            "etcd db in use in window   {:>+12.1} MiB ({:.1} bytes per fire, revisions kept until compacted), {:+} keys",
            etcd.db_growth_bytes as f64 / 1_048_576.0,
            etcd.db_growth_bytes as f64 / (r.audit.fired.max(1)) as f64,
            r.redis_key_growth
        );
        let _ = writeln!(
            out,
            "etcd history written       {:>12.1} bytes per fire (client request bytes, etcd_network_client_grpc_received_bytes_total), db file at end {:.1} MiB",
            etcd.received_bytes_per_fire,
            etcd.db_file_bytes_end as f64 / 1_048_576.0,
        );
    }
    match &r.postgres {
        None if r.etcd.is_some() => {}
        None => {
            let _ = writeln!(
                out,
                "memory                     {:>12.0} Redis bytes per stored job, {rss} worker RSS per 10k owned jobs",
                r.redis_bytes_per_job,
            );
            let _ = writeln!(
                out,
                "redis memory in window     {:>+12.1} MiB ({:.1} bytes per fire), {:+} keys",
                r.redis_memory_growth_bytes as f64 / 1_048_576.0,
                r.redis_memory_growth_bytes as f64 / (r.audit.fired.max(1)) as f64,
                r.redis_key_growth
            );
        }
        Some(pg) => {
            let _ = writeln!(
                out,
                "memory                     {:>12.0} database bytes per stored job, {rss} worker RSS per 10k owned jobs",
                pg.db_bytes_per_job,
            );
            let _ = writeln!(
                out,
                "database size in window    {:>+12.1} MiB ({:.1} bytes per fire)",
                pg.db_growth_bytes as f64 / 1_048_576.0,
                pg.db_growth_bytes as f64 / (r.audit.fired.max(1)) as f64,
            );
        }
    }
    let _ = writeln!(out, "fires/s                    {:>12.1}", r.fires_per_s);
    out.push_str(&fires_per_node_text(&r.fires_per_node));
    let _ = writeln!(
        out,
        "fires expected / fired     {:>12} / {}",
        a.expected, a.fired
    );
    let _ = writeln!(
        out,
        "misses / duplicates / unexpected {:>6} / {} / {}",
        a.misses, a.duplicates, a.unexpected
    );
    let _ = writeln!(
        out,
        "  of the misses: lost with a crash {}, recorded as not run {:?}, unexplained {}",
        r.lost_with_crash, r.recorded_not_run, r.unexplained_misses
    );
    let _ = writeln!(
        out,
        "lateness p50 / p99 / max   {:>8} / {} / {} ms",
        a.lateness.p50_ms, a.lateness.p99_ms, a.lateness.max_ms
    );
    match (&r.postgres, &r.etcd) {
        (None, Some(etcd)) => out.push_str(&etcd_text(r, etcd)),
        (None, None) => {
            let _ = writeln!(
                out,
                "redis commands per fire    {:>12.3}  ({} commands)",
                r.commands_per_fire, r.redis_commands
            );
            let mut top: Vec<(&String, &f64)> = r.per_command_per_fire.iter().collect();
            top.sort_by(|x, y| y.1.total_cmp(x.1));
            for (name, per_fire) in top.into_iter().take(6) {
                let _ = writeln!(out, "  {name:<24} {per_fire:>12.3} per fire");
            }
            let _ = writeln!(
                out,
                "CPU s per 1000 fires       {:>12.4} workers (this process), {:.4} redis-server",
                r.process_cpu_s_per_1000_fires, r.redis_cpu_s_per_1000_fires
            );
        }
        (Some(pg), _) => out.push_str(&postgres_text(r, pg)),
    }
    let crashed = r
        .churn
        .iter()
        .any(|e| e.event.action == super::churn::ChurnAction::Crash);
    let _ = writeln!(
        out,
        "claimed / conflicts (whole run) {:>7} / {}{}",
        r.claimed_total,
        r.claim_conflicts_total,
        if crashed {
            "  (crashed workers report nothing)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "claim pauses / overloads       {:>7} / {}",
        r.claim_pauses_total, r.overloads_total
    );
    out
}

/// The etcd lines of the summary: gRPC requests (= round trips) and raft
/// proposals per fire, server CPU.
fn etcd_text(r: &LiveReport, etcd: &EtcdReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "etcd requests per fire     {:>12.3}  ({} gRPC request messages, grpc_server_msg_received_total; one client round trip each; {} bench lease reads included)",
        etcd.requests_per_fire, etcd.requests, etcd.bench_lease_reads
    );
    let mut top: Vec<(&String, &f64)> = etcd.per_method_per_fire.iter().collect();
    top.sort_by(|x, y| y.1.total_cmp(x.1));
    for (method, per_fire) in top.into_iter().take(6) {
        let _ = writeln!(out, "  {method:<24} {per_fire:>12.3} per fire");
    }
    let _ = writeln!(
        out,
        "raft proposals per fire    {:>12.3}  ({} etcd_server_proposals_committed_total)",
        etcd.proposals_per_fire, etcd.proposals_committed
    );
    let _ = writeln!(
        out,
        "CPU s per 1000 fires       {:>12.4} workers (this process), {:.4} etcd (process_cpu_seconds_total)",
        r.process_cpu_s_per_1000_fires, etcd.server_cpu_s_per_1000_fires
    );
    out
}

/// The PostgreSQL lines of the summary: statements (= round trips),
/// transactions and function calls per fire, server CPU.
fn postgres_text(r: &LiveReport, pg: &PgReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "statements per fire        {:>12.3}  ({} top-level statements, pg_stat_statements calls; one client round trip each; {} of the benchmark's own lease reads left out)",
        pg.statements_per_fire, pg.statements, pg.bench_statements_excluded
    );
    let mut top: Vec<(&String, &f64)> = pg.per_statement_per_fire.iter().collect();
    top.sort_by(|x, y| y.1.total_cmp(x.1));
    for (text, per_fire) in top.into_iter().take(6) {
        let _ = writeln!(out, "  {per_fire:>8.3} per fire  {text}");
    }
    let _ = writeln!(
        out,
        "transactions per fire      {:>12.3}  ({} xact_commit + xact_rollback, pg_stat_database)",
        pg.transactions_per_fire, pg.transactions
    );
    let mut functions: Vec<(&String, &f64)> = pg.function_calls_per_fire.iter().collect();
    functions.sort_by(|x, y| y.1.total_cmp(x.1));
    let listed: Vec<String> = functions
        .into_iter()
        .take(8)
        .map(|(name, per_fire)| format!("{name} {per_fire:.3}"))
        .collect();
    let _ = writeln!(
        out,
        "function calls per fire    {}  (pg_stat_user_functions, nested calls included)",
        if listed.is_empty() {
            "none".to_owned()
        } else {
            listed.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "CPU s per 1000 fires       {:>12.4} workers (this process), {:.4} postgres (postmaster and all its processes, exited ones included)",
        r.process_cpu_s_per_1000_fires, pg.server_cpu_s_per_1000_fires
    );
    out
}

/// Workers listed per line of the fires-per-node summary.
const NODES_PER_LINE: usize = 6;

/// The fires-per-node lines of the summary: max/mean, then every worker's
/// count of runs in the window.
pub fn fires_per_node_text(nodes: &NodeFires) -> String {
    let mut out = String::new();
    let stats = &nodes.stats;
    let _ = writeln!(
        out,
        "fires per node max / mean  {:>12} / {:.1} = {:.3}  (min {}, {} workers)",
        stats.max,
        stats.mean,
        stats.max_over_mean,
        stats.min,
        nodes.per_node.len()
    );
    let entries: Vec<String> = nodes
        .per_node
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    for line in entries.chunks(NODES_PER_LINE) {
        let _ = writeln!(out, "  {}", line.join(", "));
    }
    out
}

fn ms_or_dash(value: Option<i64>) -> String {
    value.map_or_else(|| "never".to_owned(), |v| format!("{v} ms"))
}

/// The per-event churn table (empty without churn).
pub fn churn_table(events: &[EventReport]) -> String {
    if events.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "churn: settled = every shard held by its expected owner again; late = started > {} s after its scheduled time",
        LATE_MS / 1000
    );
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:<9} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "event", "at s", "kind", "settled", "fires", "late", "max late", "late to", "lost with"
    );
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:<9} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "", "", "", "in", "settling", "settling", "ms", "next event", "the crash"
    );
    for e in events {
        let lost = if e.event.action == super::churn::ChurnAction::Crash {
            e.lost_with_crash.to_string()
        } else {
            "-".to_owned()
        };
        let settled = ms_or_dash(e.settle_ms) + if e.overlapped { "*" } else { "" };
        let _ = writeln!(
            out,
            "{:<12} {:>7.3} {:<9} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10}",
            e.event.to_string(),
            e.started_offset_ms as f64 / 1000.0,
            e.kind,
            settled,
            e.while_settling.fires,
            e.while_settling.late,
            e.while_settling.max_ms,
            e.until_next_event.late,
            lost
        );
    }
    if events.iter().any(|e| e.overlapped) {
        let _ = writeln!(
            out,
            "* the next event happened before this one settled; both settled at the same instant"
        );
    }
    out
}

/// `live.csv`: one row per churn event (only the header without churn).
pub fn events_csv(events: &[EventReport]) -> String {
    let mut out = String::from(
        "index,action,worker,at_ms,started_offset_ms,kind,settle_ms,overlapped,\
         fires_while_settling,late_while_settling,max_lateness_while_settling_ms,\
         fires_until_next_event,late_until_next_event,max_lateness_until_next_event_ms,\
         lost_with_crash,lost_instants,crashed_holder\n",
    );
    for (index, e) in events.iter().enumerate() {
        let fields = [
            (index + 1).to_string(),
            e.event.action.as_str().to_owned(),
            csv_field(&e.event.worker),
            e.event.at.as_millis().to_string(),
            e.started_offset_ms.to_string(),
            e.kind.to_owned(),
            e.settle_ms.map(|v| v.to_string()).unwrap_or_default(),
            e.overlapped.to_string(),
            e.while_settling.fires.to_string(),
            e.while_settling.late.to_string(),
            e.while_settling.max_ms.to_string(),
            e.until_next_event.fires.to_string(),
            e.until_next_event.late.to_string(),
            e.until_next_event.max_ms.to_string(),
            e.lost_with_crash.to_string(),
            e.lost_instants.to_string(),
            csv_field(e.crashed_holder.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// `lateness.csv`: one row per second of the window with a scheduled run.
pub fn lateness_csv(series: &[SecondLateness]) -> String {
    let mut out = String::from("second,fires,min_ms,p50_ms,p99_ms,max_ms\n");
    for s in series {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            s.second, s.fires, s.min_ms, s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::churn::ChurnAction;
    use std::time::Duration;

    fn event(action: ChurnAction, settle_ms: Option<i64>, overlapped: bool) -> EventReport {
        EventReport {
            event: ChurnEvent {
                at: Duration::from_secs(25),
                action,
                worker: "w3".to_owned(),
            },
            kind: action.settle_kind(),
            started_offset_ms: 25_002,
            settle_ms,
            overlapped,
            while_settling: SpanLateness {
                fires: 3000,
                late: 2500,
                max_ms: 5900,
            },
            until_next_event: SpanLateness {
                fires: 16000,
                late: 2600,
                max_ms: 5900,
            },
            lost_with_crash: 480,
            lost_instants: 1,
            crashed_holder: Some("bench-w3/abc".to_owned()),
        }
    }

    #[test]
    fn fires_per_node_lines() {
        use crate::live::audit::Fire;
        use crate::live::per_node::fires_per_node;
        use std::collections::BTreeSet;
        let workers: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
        let nodes: BTreeSet<String> = workers.iter().cloned().collect();
        let fires: Vec<Fire> = (0..8u16)
            .flat_map(|w| {
                (0..=i64::from(w)).map(move |s| Fire {
                    job: 0,
                    scheduled_ms: s * 1000,
                    started_ms: s * 1000,
                    worker: w,
                })
            })
            .collect();
        let text = fires_per_node_text(&fires_per_node(&fires, &workers, &nodes, 0, 100_000));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("8 / 4.5 = 1.778"), "{text}");
        assert!(lines[1].starts_with("  w0 1, w1 2,"), "{text}");
        assert_eq!(lines[2], "  w6 7, w7 8");
    }

    #[test]
    fn table_and_csv_rows() {
        let events = [
            event(ChurnAction::Crash, Some(5812), false),
            event(ChurnAction::Join, None, true),
        ];
        let table = churn_table(&events);
        assert!(table.contains("crash w3"), "{table}");
        assert!(table.contains("takeover"));
        assert!(table.contains("5812 ms"));
        assert!(table.contains("never*"));
        assert!(table.contains("480"));
        let csv = events_csv(&events);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].split(',').count(),
            lines[1].split(',').count(),
            "{csv}"
        );
        assert!(lines[1].starts_with("1,crash,w3,25000,25002,takeover,5812,false,3000,2500,"));
        assert!(churn_table(&[]).is_empty());
        let series = [SecondLateness {
            second: 3,
            fires: 10,
            min_ms: 0,
            p50_ms: 1,
            p99_ms: 2,
            max_ms: 3,
        }];
        assert_eq!(
            lateness_csv(&series),
            "second,fires,min_ms,p50_ms,p99_ms,max_ms\n3,10,0,1,2,3\n"
        );
    }
}
