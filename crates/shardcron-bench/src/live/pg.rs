//! `live --store postgres`: the private PostgreSQL server and what is
//! counted on it.
//!
//! The server comes from the test kit ([`PostgresServer`]), is switched to
//! `shared_preload_libraries=pg_stat_statements` and `track_functions=all`
//! (`ALTER SYSTEM`, then a restart on the same cluster) before any worker
//! connects, and is read with `psql` around the window:
//!
//! * statements: the `calls` of `pg_stat_statements` (top-level statements
//!   only, so a server-side function's inner queries are not counted). The
//!   coordinator runs each trait call as one statement on a pooled
//!   connection with its prepared statements cached, so a statement is one
//!   client round trip (a first `prepare` on a fresh connection adds one
//!   more, not counted). The benchmark's own lease reads run as a role of
//!   their own ([`VERIFIER_ROLE`]) and the stats queries name `pg_stat`:
//!   both are left out;
//! * transactions: `xact_commit + xact_rollback` of the database
//!   (`pg_stat_database`), less the benchmark's own lease reads; this also
//!   counts autovacuum's transactions and the few of the stats reads
//!   themselves;
//! * server-side function calls: `pg_stat_user_functions` of the
//!   namespace's schema (nested calls included; the statistics do not say
//!   who called, so with `--churn` the benchmark's own placement reads are
//!   in them);
//! * CPU: user + system time of the postmaster and every process below it
//!   from `/proc`, plus the postmaster's `cutime + cstime` (its exited
//!   children: backends that ended, autovacuum workers);
//! * database size (`pg_database_size`).
//!
//! `pg_stat_database` and `pg_stat_user_functions` are flushed by each
//! backend about once a second, so those two lag by up to a second at both
//! ends of the window; `pg_stat_statements` does not lag.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use serde::Serialize;
use shardcron_postgres::NamespaceSchema;
use shardcron_testkit::PostgresServer;

use super::claims::{attribute, Attribution, CrashedInstance};
use super::results::RecordedMisses;
use crate::error::BenchError;

/// Role the benchmark's own store reads (the lease-holder checks of the
/// churn driver) connect as, so they can be told apart from the workers'.
pub const VERIFIER_ROLE: &str = "bench_verifier";

/// A started, instrumented private PostgreSQL server.
pub struct PgStore {
    server: PostgresServer,
    /// `SHOW server_version`.
    pub version: String,
}

/// One statement of `pg_stat_statements`.
#[derive(Clone, Debug, PartialEq)]
struct Statement {
    verifier: bool,
    calls: u64,
    text: String,
}

/// Counters read before and after the window.
pub struct PgCounters {
    statements: HashMap<String, Statement>,
    functions: BTreeMap<String, u64>,
    transactions: u64,
    /// CPU seconds of the server's processes so far.
    pub cpu_s: f64,
}

/// What `live --store postgres` measured on the server during the window.
#[derive(Clone, Debug, Serialize)]
pub struct PgReport {
    /// `SHOW server_version`.
    pub server_version: String,
    /// `pg_database_size` growth from registering the jobs, per job.
    pub db_bytes_per_job: f64,
    /// `pg_database_size` at the end of the window minus at its start.
    pub db_growth_bytes: i64,
    /// Top-level statements of the workers in the window
    /// (`pg_stat_statements` calls, the benchmark's own left out).
    pub statements: u64,
    /// `statements / fires`; each is one client round trip.
    pub statements_per_fire: f64,
    /// Statements of the benchmark's own lease reads in the window, left
    /// out of `statements` and `transactions`.
    pub bench_statements_excluded: u64,
    /// Statements per fire by statement (first 80 characters of its text).
    pub per_statement_per_fire: BTreeMap<String, f64>,
    /// Transactions in the window (`xact_commit + xact_rollback`, the
    /// benchmark's lease reads left out).
    pub transactions: u64,
    /// `transactions / fires`.
    pub transactions_per_fire: f64,
    /// Server-side function calls per fire by function
    /// (`pg_stat_user_functions`, nested calls included).
    pub function_calls_per_fire: BTreeMap<String, f64>,
    /// CPU seconds of the server (postmaster and every process below it,
    /// exited ones included) during the window.
    pub server_cpu_s: f64,
    /// `server_cpu_s` per 1,000 fires.
    pub server_cpu_s_per_1000_fires: f64,
}

impl PgStore {
    /// Starts the server, enables the statistics and creates the
    /// verifier's role.
    ///
    /// # Errors
    ///
    /// The server does not start, or a setup statement fails (for example
    /// when `pg_stat_statements` is not installed).
    pub fn start() -> Result<PgStore, BenchError> {
        let server =
            PostgresServer::start().map_err(|e| BenchError::live("starting PostgreSQL", e))?;
        // ALTER SYSTEM runs outside a transaction block: one per call.
        for sql in [
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
            "ALTER SYSTEM SET track_functions = 'all'",
        ] {
            psql(&server, "configuring PostgreSQL statistics", sql)?;
        }
        server
            .restart()
            .map_err(|e| BenchError::live("restarting PostgreSQL", e))?;
        psql(
            &server,
            "creating pg_stat_statements",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        )?;
        psql(
            &server,
            "creating the verifier role",
            &format!("CREATE ROLE {VERIFIER_ROLE} LOGIN SUPERUSER"),
        )?;
        let version = psql(&server, "reading the server version", "SHOW server_version")?;
        Ok(PgStore { server, version })
    }

    /// URL the workers connect with.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// URL of the benchmark's own reads ([`VERIFIER_ROLE`]).
    pub fn verifier_url(&self) -> String {
        format!(
            "postgres://{VERIFIER_ROLE}@127.0.0.1:{}/postgres",
            self.server.port()
        )
    }

    /// `pg_database_size` of the database, bytes.
    pub fn db_size(&self) -> Result<u64, BenchError> {
        let text = psql(
            &self.server,
            "reading pg_database_size",
            "SELECT pg_database_size(current_database())",
        )?;
        text.trim()
            .parse()
            .map_err(|e| BenchError::live("reading pg_database_size", format!("{text:?}: {e}")))
    }

    /// Reads the counters.
    pub fn counters(&self) -> Result<PgCounters, BenchError> {
        let cpu_s = self.server.pid().map_or(0.0, tree_cpu_seconds);
        let statements = psql(
            &self.server,
            "reading pg_stat_statements",
            "SELECT s.userid || '/' || s.queryid, r.rolname = 'bench_verifier', s.calls, \
             left(regexp_replace(s.query, '\\s+', ' ', 'g'), 80) \
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND s.query NOT LIKE '%pg_stat%'",
        )?;
        let functions = psql(
            &self.server,
            "reading pg_stat_user_functions",
            &format!(
                "SELECT funcname, sum(calls) FROM pg_stat_user_functions \
                 WHERE schemaname = '{}' GROUP BY funcname",
                NamespaceSchema::new(super::fleet::NAMESPACE).name()
            ),
        )?;
        let transactions = psql(
            &self.server,
            "reading pg_stat_database",
            "SELECT xact_commit + xact_rollback FROM pg_stat_database \
             WHERE datname = current_database()",
        )?;
        Ok(PgCounters {
            statements: parse_statements(&statements),
            functions: parse_pairs(&functions),
            transactions: transactions.trim().parse().unwrap_or(0),
            cpu_s,
        })
    }

    /// Attributes missed fires to crashes from the `fires` rows (claim
    /// holder and token) and counts those with a terminal status saying
    /// why they did not run.
    pub fn attribute_misses(
        &self,
        missing: &[(u32, i64)],
        events: usize,
        crashes: &[CrashedInstance],
    ) -> Result<(Attribution, RecordedMisses), BenchError> {
        let mut claims: HashMap<(u32, i64), (String, String)> = HashMap::new();
        let fires = NamespaceSchema::new(super::fleet::NAMESPACE).object("fires");
        for chunk in missing.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(job, at)| format!("('job-{job}', {at}::bigint)"))
                .collect();
            let rows = psql(
                &self.server,
                "reading claims of missed fires",
                &format!(
                    "SELECT f.job_id, f.at_ms, f.status, f.holder || '|' || f.token \
                     FROM {fires} f JOIN (VALUES {}) AS m(job_id, at_ms) \
                     ON f.job_id = m.job_id AND f.at_ms = m.at_ms",
                    values.join(", ")
                ),
            )?;
            for line in rows.lines() {
                let mut parts = line.splitn(4, '|');
                let (Some(job), Some(at), Some(status), Some(claim)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (Some(job), Ok(at)) = (
                    job.strip_prefix("job-").and_then(|j| j.parse().ok()),
                    at.parse::<i64>(),
                ) else {
                    continue;
                };
                claims.insert((job, at), (status.to_owned(), claim.to_owned()));
            }
        }
        let mut attribution = attribute(missing, events, crashes, |job, at| {
            claims.get(&(job, at)).map(|(_, claim)| claim.clone())
        });
        let mut recorded = RecordedMisses::new();
        attribution.unexplained.retain(|(job, at, _)| {
            match claims.get(&(*job, *at)).map(|(status, _)| status.as_str()) {
                Some(status @ ("misfired" | "skipped_overlap" | "cancelled")) => {
                    *recorded.entry(status.to_owned()).or_default() += 1;
                    false
                }
                _ => true,
            }
        });
        Ok((attribution, recorded))
    }
}

impl PgCounters {
    /// The report of the window between `self` and `after`, over `fired`
    /// fires (`db_*` filled in by the caller).
    pub fn report(&self, after: &PgCounters, fired: u64, version: &str) -> PgReport {
        let per_fire = |n: u64| n as f64 / fired.max(1) as f64;
        let mut statements = 0u64;
        let mut excluded = 0u64;
        let mut per_statement: BTreeMap<String, u64> = BTreeMap::new();
        for (key, now) in &after.statements {
            let calls = now
                .calls
                .saturating_sub(self.statements.get(key).map_or(0, |s| s.calls));
            if calls == 0 {
                continue;
            }
            if now.verifier {
                excluded += calls;
            } else {
                statements += calls;
                *per_statement.entry(now.text.clone()).or_default() += calls;
            }
        }
        let functions = after
            .functions
            .iter()
            .filter_map(|(name, &calls)| {
                let delta = calls.saturating_sub(self.functions.get(name).copied().unwrap_or(0));
                (delta > 0).then(|| (name.clone(), per_fire(delta)))
            })
            .collect();
        let transactions = after
            .transactions
            .saturating_sub(self.transactions)
            .saturating_sub(excluded);
        let server_cpu_s = after.cpu_s - self.cpu_s;
        PgReport {
            server_version: version.to_owned(),
            db_bytes_per_job: 0.0,
            db_growth_bytes: 0,
            statements,
            statements_per_fire: per_fire(statements),
            bench_statements_excluded: excluded,
            per_statement_per_fire: per_statement
                .into_iter()
                .map(|(text, calls)| (text, per_fire(calls)))
                .collect(),
            transactions,
            transactions_per_fire: per_fire(transactions),
            function_calls_per_fire: functions,
            server_cpu_s,
            server_cpu_s_per_1000_fires: if fired == 0 {
                0.0
            } else {
                server_cpu_s * 1000.0 / fired as f64
            },
        }
    }
}

fn psql(server: &PostgresServer, action: &'static str, sql: &str) -> Result<String, BenchError> {
    server.psql(sql).map_err(|e| BenchError::live(action, e))
}

/// `key|verifier|calls|text` rows (`verifier` is `t` or `f`).
fn parse_statements(text: &str) -> HashMap<String, Statement> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, '|');
            let key = parts.next()?.to_owned();
            let verifier = parts.next()? == "t";
            let calls = parts.next()?.parse().ok()?;
            let text = parts.next().unwrap_or("").to_owned();
            Some((
                key,
                Statement {
                    verifier,
                    calls,
                    text,
                },
            ))
        })
        .collect()
}

/// `name|number` rows.
fn parse_pairs(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once('|')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the command name: state first.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // State is not a number; keep positions by mapping it to 0.
    Some(
        after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds of `root` and every process below it: each process's
/// `utime + stime + cutime + cstime` (the last two hold its waited-for
/// children that exited).
fn tree_cpu_seconds(root: u32) -> f64 {
    // Positions after the command name: 0 state, 1 ppid, ..., 11 utime,
    // 12 stime, 13 cutime, 14 cstime.
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Some(fields) = stat_fields(pid) else {
                continue;
            };
            let (Some(&ppid), Some(times)) = (fields.get(1), fields.get(11..15)) else {
                continue;
            };
            if let Ok(ppid) = u32::try_from(ppid) {
                parents.entry(ppid).or_default().push(pid);
            }
            ticks.insert(pid, times.iter().sum());
        }
    }
    let mut total = 0u64;
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        total += ticks.get(&pid).copied().unwrap_or(0);
        if let Some(children) = parents.get(&pid) {
            stack.extend(children.iter().copied());
        }
    }
    total as f64 / clock_ticks()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_psql_rows() {
        let rows = "10/77|f|120|SELECT \"s\".claim($1, $2)\n10/78|t|3|SELECT a || b\nbad\n";
        let parsed = parse_statements(rows);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["10/77"].calls, 120);
        assert!(!parsed["10/77"].verifier);
        assert_eq!(parsed["10/78"].text, "SELECT a || b");
        assert!(parsed["10/78"].verifier);
        let pairs = parse_pairs("claim|12\nheartbeat|3\n");
        assert_eq!(pairs.get("claim"), Some(&12));
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn window_deltas_leave_out_the_verifier() {
        let counters = |claim: u64, lease: u64, xacts: u64, cpu_s: f64| PgCounters {
            statements: parse_statements(&format!(
                "1/1|f|{claim}|SELECT claim\n2/2|t|{lease}|SELECT leases"
            )),
            functions: parse_pairs(&format!("claim|{claim}")),
            transactions: xacts,
            cpu_s,
        };
        let report = counters(10, 1, 20, 1.0).report(&counters(110, 5, 124, 1.5), 1000, "15");
        assert_eq!(report.statements, 100);
        assert_eq!(report.bench_statements_excluded, 4);
        assert_eq!(report.transactions, 100);
        assert!((report.statements_per_fire - 0.1).abs() < 1e-9);
        assert!((report.server_cpu_s_per_1000_fires - 0.5).abs() < 1e-9);
        assert_eq!(report.function_calls_per_fire.get("claim"), Some(&0.1));
    }

    #[test]
    fn this_process_has_cpu_time() {
        // Busy for a moment so the tick counters move.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i ^ (x >> 3));
        }
        assert!(x > 0);
        assert!(tree_cpu_seconds(std::process::id()) >= 0.0);
    }
}
