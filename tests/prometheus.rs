//! The observability artefacts in `dashboards/` against a real Prometheus.
//!
//! A fleet of three `shardcron worker --listen` processes runs a few
//! every-second jobs (succeeding, failing, timing out, misfire policy `skip`),
//! goes through a crash and restart of one worker and a lease-renewal fault on
//! another, while the distro `prometheus` binary scrapes the three `/metrics`
//! endpoints every second with `dashboards/alerts.yaml` loaded as rule file.
//! Then every PromQL expression of every dashboard (with Grafana's variables
//! substituted), every template-variable query and every alert rule is
//! evaluated through `/api/v1/query`:
//!
//! * a dashboard expression must be valid and return at least one series;
//! * an alert rule must be valid; since a healthy fleet must not fire it, what
//!   must return series is its *signal*: the expression without the alert
//!   threshold (`a / b > 0.1` → `a / b`; `x == 0 or absent(y)` → `x`, `y`).
//!
//! `promtool check rules` must accept the alert file, and the dashboards are
//! checked for structure (uids, variables, panel types) and for using only the
//! metric names of `shardcron_runtime::metrics`, and all of them.
//!
//! Needs `prometheus` and `promtool` on PATH (`.ci/run` installs the Debian
//! package) and `redis-server`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fleet_settled, signal, wait_exit, wait_for, Cli};
use serde_json::Value;
use shardcron_runtime::metrics as m;

const NAMESPACE: &str = "prom-dashboards";
const NODES: [&str; 3] = ["w1", "w2", "w3"];
const SCRAPE_INTERVAL: &str = "1s";

/// Values the test gives Grafana's variables.
const RATE_INTERVAL: &str = "30s";
const INTERVAL: &str = "15s";
const RANGE: &str = "5m";
/// `$node` is multi-value with "All" = `.*`.
const ALL_NODES: &str = ".*";

const WORKER_CONFIG: &str = "[worker]\nheartbeat = \"250ms\"\nmember_ttl = \"1500ms\"\nlease_ttl = \"1500ms\"\ndrift_margin = \"300ms\"\ndrain_timeout = \"5s\"\n";

const DASHBOARDS: [&str; 4] = ["fleet-overview", "scheduling-health", "rebalance", "redis"];

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every metric the runtime exports; histograms also as `_bucket/_sum/_count`.
fn known_metrics() -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let histograms = BTreeSet::from([
        m::FIRE_LATENESS_SECONDS,
        m::RUN_DURATION_SECONDS,
        m::SHARD_HANDOFF_SECONDS,
        m::JOB_PROPAGATION_SECONDS,
        m::REDIS_ROUND_TRIP_SECONDS,
    ]);
    let mut all = BTreeSet::from([
        m::FIRES_TOTAL,
        m::RUNS_IN_FLIGHT,
        m::MEMBERS,
        m::SHARDS_DESIRED,
        m::SHARDS_OWNED,
        m::JOBS_OWNED,
        m::EXPECTED_FIRES_PER_MINUTE,
        m::LEASE_ACQUISITIONS_TOTAL,
        m::LEASE_LOSSES_TOTAL,
        m::LEASE_RENEWAL_FAILURES_TOTAL,
        m::REBALANCES_TOTAL,
        m::CLAIM_CONFLICTS_TOTAL,
        m::CATCHUP_FIRES_TOTAL,
        m::MISFIRES_TOTAL,
        m::REDIS_ERRORS_TOTAL,
        m::LEADER,
        m::LEADER_CHANGES_TOTAL,
        m::FIRES_BY_PLACEMENT_TOTAL,
        m::RUNS_WAITING,
        m::OVERLOADED,
        m::CLAIM_PAUSES_TOTAL,
    ]);
    all.extend(histograms.iter().copied());
    (all, histograms)
}

// ---------------------------------------------------------------- processes

/// Worker processes, killed on drop.
struct Workers {
    children: BTreeMap<String, Child>,
    ports: BTreeMap<String, u16>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Workers {
    fn spawn(cli: &Cli, node: &str, config: &Path, port: u16) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(cli.path(&format!("{node}.log")))
            .expect("worker log file");
        cli.command()
            .arg("worker")
            .arg("--node-id")
            .arg(node)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shardcron worker")
    }

    /// Starts `node` on `port` (or a free port, retried if taken) and waits
    /// until its `/metrics` answers.
    fn start(&mut self, cli: &Cli, node: &str, config: &Path, port: Option<u16>) {
        let attempts = if port.is_some() { 1 } else { 3 };
        for _ in 0..attempts {
            let port = port.unwrap_or_else(|| shardcron_testkit::free_port().expect("free port"));
            let mut child = Self::spawn(cli, node, config, port);
            let start = Instant::now();
            let mut exited = None;
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    break;
                }
                if matches!(http_get(port, "/metrics"), Ok((200, _))) {
                    self.children.insert(node.to_owned(), child);
                    self.ports.insert(node.to_owned(), port);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "worker {node} on 127.0.0.1:{port} did not serve /metrics (exit: {exited:?}); log:\n{}",
                log_tail(&cli.path(&format!("{node}.log")), 20)
            );
        }
        panic!("worker {node} never served /metrics on its --listen address");
    }

    fn kill(&mut self, node: &str) {
        if let Some(mut child) = self.children.remove(node) {
            signal(&child, libc::SIGKILL);
            let _ = wait_exit(&mut child, Duration::from_secs(5));
        }
    }
}

/// The Prometheus server, killed on drop (before its data dir is removed).
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: this test runs a real Prometheus. Install it with \
                 `apt-get install -y prometheus` (Debian/Ubuntu; provides prometheus and promtool), \
                 as .ci/run does."
            )
        })
}

impl Prometheus {
    fn start(targets: &[u16], rules: &Path) -> Self {
        let binary = require_tool("prometheus");
        let promtool = require_tool("promtool");
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = shardcron_testkit::free_port().expect("free port");
            let config = dir.path().join("prometheus.yml");
            let target_list: Vec<String> =
                targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
            let text = format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  evaluation_interval: 1s\n\
                 rule_files:\n  - '{}'\n\
                 scrape_configs:\n  - job_name: shardcron\n    static_configs:\n      - targets: [{}]\n",
                rules.display(),
                target_list.join(", ")
            );
            std::fs::write(&config, text).expect("write prometheus.yml");
            let check = Command::new(&promtool)
                .args(["check", "config"])
                .arg(&config)
                .output()
                .expect("run promtool check config");
            assert!(
                check.status.success(),
                "promtool check config failed:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            let log = dir.path().join("prometheus.log");
            let log_file = std::fs::File::create(&log).expect("prometheus log");
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log fd"))
                .stderr(log_file)
                .spawn()
                .expect("spawn prometheus");
            let mut prom = Prometheus {
                child,
                port,
                log,
                _dir: dir,
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(status)) = prom.child.try_wait() {
                    eprintln!(
                        "prometheus exited with {status:?}:\n{}",
                        log_tail(&prom.log, 30)
                    );
                    break;
                }
                if matches!(http_get(port, "/-/ready"), Ok((200, _))) {
                    return prom;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = prom.child.kill();
        }
        panic!("prometheus did not become ready");
    }

    /// Runs an instant query; `Err` is the API's error (invalid expression).
    fn query(&self, expr: &str) -> Result<Value, String> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (code, body) = http_get(self.port, &path)?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {code}, not JSON ({e}): {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("?")
            ))
        }
    }

    fn get_json(&self, path: &str) -> Value {
        let (code, body) = http_get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------- HTTP

/// A minimal HTTP/1.0 GET to 127.0.0.1 (the body ends at EOF).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed HTTP response: {text}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed status line: {head}"))?;
    Ok((code, body.to_owned()))
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------- PromQL helpers

/// Grafana's variables as a dashboard viewer with namespace `ns` and all
/// nodes selected would have them.
fn substitute(expr: &str, ns: &str) -> String {
    let vars = [
        ("__rate_interval", RATE_INTERVAL),
        ("__interval", INTERVAL),
        ("__range", RANGE),
        ("namespace", ns),
        ("node", ALL_NODES),
    ];
    let mut out = expr.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("[[{name}]]"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// For each byte of `expr`: whether it is at the top level (outside brackets
/// and strings; brackets themselves are not).
fn top_level(expr: &str) -> Vec<bool> {
    let bytes = expr.as_bytes();
    let mut top = vec![false; bytes.len()];
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => quote = Some(c),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => top[i] = depth == 0,
        }
        i += 1;
    }
    top
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Splits at top-level `or`.
fn split_or(expr: &str) -> Vec<String> {
    let top = top_level(expr);
    let b = expr.as_bytes();
    let mut parts = Vec::new();
    let mut from = 0;
    let mut i = 0;
    while i + 2 <= b.len() {
        let word = &b[i..i + 2];
        let before_ok = i == 0 || !is_ident(b[i - 1]);
        let after_ok = i + 2 == b.len() || !is_ident(b[i + 2]);
        if top[i] && top[i + 1] && word.eq_ignore_ascii_case(b"or") && before_ok && after_ok {
            parts.push(expr[from..i].trim().to_owned());
            from = i + 2;
            i += 2;
            continue;
        }
        i += 1;
    }
    parts.push(expr[from..].trim().to_owned());
    parts
}

/// Index of the `)` closing the `(` at `open` (brackets in strings ignored).
fn matching_close(expr: &str, open: usize) -> Option<usize> {
    let b = expr.as_bytes();
    let mut depth = 0;
    let mut quote: Option<u8> = None;
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == b'\\' && q != b'`' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return (c == b')').then_some(i);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// What an alert rule measures: each `or` operand without its threshold
/// comparison; `absent(x)` measures `x`.
fn alert_signals(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mut part in split_or(expr) {
        loop {
            let t = part.trim();
            if t.starts_with('(') && matching_close(t, 0) == Some(t.len() - 1) {
                part = t[1..t.len() - 1].to_owned();
            } else {
                break;
            }
        }
        let t = part.trim();
        if let Some(rest) = t.strip_prefix("absent(") {
            if matching_close(t, "absent".len()) == Some(t.len() - 1) {
                out.push(rest[..rest.len() - 1].trim().to_owned());
                continue;
            }
        }
        if let Some(rest) = t.strip_prefix("absent_over_time(") {
            if matching_close(t, "absent_over_time".len()) == Some(t.len() - 1) {
                out.push(format!("last_over_time({})", &rest[..rest.len() - 1]));
                continue;
            }
        }
        let top = top_level(t);
        let b = t.as_bytes();
        let cut = (0..b.len()).find(|&i| {
            top[i]
                && (b[i] == b'>'
                    || b[i] == b'<'
                    || ((b[i] == b'=' || b[i] == b'!') && b.get(i + 1) == Some(&b'=')))
        });
        out.push(match cut {
            Some(i) => t[..i].trim().to_owned(),
            None => t.to_owned(),
        });
    }
    out
}

/// Metric names (`shardcron_*`) an expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("shardcron_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && is_ident(b[end]) {
            end += 1;
        }
        if start == 0 || !is_ident(b[start - 1]) {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Base metric of an exported series name (`x_bucket` → `x` for histograms).
fn base_metric<'a>(name: &'a str, histograms: &BTreeSet<&'static str>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if histograms.contains(base) {
                return base;
            }
        }
    }
    name
}

fn result_len(data: &Value) -> usize {
    match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"].as_array().map_or(0, Vec::len),
        Some("scalar") | Some("string") => 1,
        _ => 0,
    }
}

// ---------------------------------------------------------------- dashboards

struct DashExpr {
    origin: String,
    expr: String,
}

/// Loads the dashboards, checks their structure, returns their expressions
/// and their template-variable queries.
fn load_dashboards() -> (Vec<DashExpr>, Vec<DashExpr>) {
    let mut exprs = Vec::new();
    let mut var_queries = Vec::new();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let path = repo_path(&format!("dashboards/{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let d: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
        let uid = d["uid"].as_str().unwrap_or("");
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_owned()) {
            problems.push(format!(
                "{name}: uid {uid:?} missing, longer than 40 or duplicated"
            ));
        }
        if d["title"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no title"));
        }
        if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            problems.push(format!(
                "{name}: schemaVersion {} (want the current schema, >= 36)",
                d["schemaVersion"]
            ));
        }
        // Template variables.
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(format!(
                "{name}: variable `datasource` must be type datasource, query prometheus"
            )),
        }
        for (vname, multi) in [("namespace", false), ("node", true)] {
            match var(vname) {
                Some(v) if v["type"] == "query" => {
                    let q = v["query"]
                        .as_str()
                        .or_else(|| v["query"]["query"].as_str())
                        .or_else(|| v["definition"].as_str())
                        .unwrap_or("");
                    if !q.starts_with("label_values(") {
                        problems.push(format!(
                            "{name}: variable `{vname}` query {q:?} is not label_values(...)"
                        ));
                    } else {
                        var_queries.push(DashExpr {
                            origin: format!("{name}: variable ${vname}"),
                            expr: q.to_owned(),
                        });
                    }
                    if multi && (v["multi"] != true || v["includeAll"] != true) {
                        problems.push(format!(
                            "{name}: variable `{vname}` must be multi-value with All"
                        ));
                    }
                    if v["datasource"]["uid"] != "${datasource}" {
                        problems.push(format!(
                            "{name}: variable `{vname}` must use ${{datasource}}"
                        ));
                    }
                }
                _ => problems.push(format!("{name}: query variable `{vname}` missing")),
            }
        }
        // Panels (rows may nest panels).
        let mut stack: Vec<Value> = d["panels"].as_array().cloned().unwrap_or_default();
        let mut ids = BTreeSet::new();
        let mut panel_count = 0;
        while let Some(p) = stack.pop() {
            if let Some(inner) = p["panels"].as_array() {
                stack.extend(inner.iter().cloned());
            }
            let kind = p["type"].as_str().unwrap_or("");
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            if kind == "row" {
                continue;
            }
            panel_count += 1;
            if !matches!(kind, "timeseries" | "stat" | "table") {
                problems.push(format!(
                    "{name}/{title}: panel type {kind:?} (want timeseries, stat or table)"
                ));
            }
            if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                problems.push(format!("{name}/{title}: missing or duplicate panel id"));
            }
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "{name}/{title}: panel data source must be ${{datasource}}"
                ));
            }
            for k in ["x", "y", "w", "h"] {
                if p["gridPos"][k].as_u64().is_none() {
                    problems.push(format!("{name}/{title}: gridPos.{k} missing"));
                }
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{name}/{title}: no targets"));
            }
            let mut refs = BTreeSet::new();
            for t in targets {
                let r = t["refId"].as_str().unwrap_or("").to_owned();
                if r.is_empty() || !refs.insert(r.clone()) {
                    problems.push(format!("{name}/{title}: missing or duplicate refId {r:?}"));
                }
                match t["expr"].as_str() {
                    Some(e) if !e.trim().is_empty() => exprs.push(DashExpr {
                        origin: format!("{name} / {title} / {r}"),
                        expr: e.to_owned(),
                    }),
                    _ => problems.push(format!("{name}/{title}/{r}: empty expr")),
                }
            }
        }
        if panel_count == 0 {
            problems.push(format!("{name}: no panels"));
        }
    }
    // Metric names: only the runtime's, and every one of them somewhere.
    let (known, histograms) = known_metrics();
    let mut used = BTreeSet::new();
    for e in exprs.iter().chain(&var_queries) {
        for n in metric_names(&e.expr) {
            let base = base_metric(&n, &histograms);
            if known.contains(base) {
                used.insert(base.to_owned());
            } else {
                problems.push(format!("{}: unknown metric {n}", e.origin));
            }
        }
    }
    for k in &known {
        if !used.contains(*k) {
            problems.push(format!("no dashboard panel shows {k}"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n  {}",
        problems.join("\n  ")
    );
    (exprs, var_queries)
}

/// `label_values(selector, label)` as a PromQL expression that returns one
/// series per value.
fn label_values_query(q: &str) -> String {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .expect("label_values(...)");
    let top = top_level(inner);
    let comma = (0..inner.len())
        .rev()
        .find(|&i| top[i] && inner.as_bytes()[i] == b',');
    match comma {
        Some(i) => format!(
            "count by ({}) ({})",
            inner[i + 1..].trim(),
            inner[..i].trim()
        ),
        None => format!("count by ({}) ({{{}=~\".+\"}})", inner.trim(), inner.trim()),
    }
}

// ---------------------------------------------------------------- the fleet

fn status(cli: &Cli) -> Value {
    let out = cli.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_settled(cli: &Cli, members: usize, what: &str) {
    wait_for(Duration::from_secs(20), || {
        fleet_settled(&status(cli), members)
    })
    .unwrap_or_else(|| {
        panic!(
            "fleet did not settle with {members} members ({what}): {}",
            status(cli)
        )
    });
}

fn put_job(cli: &Cli, args: &[&str]) {
    let mut full = vec!["job", "put"];
    full.extend_from_slice(args);
    let out = cli.run(&full);
    assert!(
        out.status.success(),
        "job put {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboards_and_alerts_evaluate_against_real_prometheus() {
    let started = Instant::now();
    // Fail fast (before building a fleet) when the tools are missing.
    let promtool = require_tool("promtool");
    require_tool("prometheus");

    let alerts = repo_path("dashboards/alerts.yaml");
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&alerts)
        .output()
        .expect("run promtool");
    let promtool_out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        check.status.success(),
        "promtool check rules dashboards/alerts.yaml failed:\n{promtool_out}"
    );
    println!(
        "promtool check rules dashboards/alerts.yaml:\n{}",
        promtool_out.trim_end()
    );

    let (dash_exprs, var_queries) = load_dashboards();

    // --- fleet
    let cli = Cli::new(NAMESPACE);
    let config = cli.write("worker.toml", WORKER_CONFIG);
    for i in 0..3 {
        put_job(
            &cli,
            &[
                "--id",
                &format!("ok-{i}"),
                "--schedule",
                "@every 1s",
                "--exec",
                "true",
            ],
        );
    }
    put_job(
        &cli,
        &[
            "--id",
            "fails",
            "--schedule",
            "@every 1s",
            "--exec",
            "false",
            "--metrics-label",
            "failing-job",
        ],
    );
    put_job(
        &cli,
        &[
            "--id",
            "slow",
            "--schedule",
            "@every 1s",
            "--exec",
            "sleep 3",
            "--timeout",
            "200ms",
        ],
    );
    put_job(
        &cli,
        &[
            "--id",
            "skipper",
            "--schedule",
            "@every 1s",
            "--exec",
            "true",
            "--misfire",
            "skip",
        ],
    );

    let mut workers = Workers {
        children: BTreeMap::new(),
        ports: BTreeMap::new(),
    };
    for node in NODES {
        workers.start(&cli, node, &config, None);
    }
    let ports: Vec<u16> = NODES.iter().map(|n| workers.ports[*n]).collect();
    let prom = Prometheus::start(&ports, &alerts);
    wait_settled(&cli, 3, "start");

    // The opt-in per-job label appears on the fire metrics of the one job that
    // asked for it, and on no other series.
    let labelled = (0..100).any(|_| {
        let found = ports.iter().any(|p| {
            http_get(*p, "/metrics").is_ok_and(|(_, body)| {
                body.contains("shardcron_fires_total{")
                    && body.lines().any(|l| {
                        l.starts_with("shardcron_fires_total{")
                            && l.contains(r#"job_label="failing-job""#)
                    })
            })
        });
        if !found {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(labelled, "no fire metric carries job_label=\"failing-job\"");
    for p in &ports {
        if let Ok((_, body)) = http_get(*p, "/metrics") {
            let stray: Vec<&str> = body
                .lines()
                .filter(|l| l.contains("job_label=") && !l.contains(r#"job_label="failing-job""#))
                .collect();
            assert!(stray.is_empty(), "unexpected per-job labels: {stray:?}");
        }
    }

    // Crash and restart of w3 (same port): rebalances, handoffs, takeovers.
    workers.kill("w3");
    wait_settled(&cli, 2, "after killing w3");
    workers.start(&cli, "w3", &config, Some(ports[2]));
    wait_settled(&cli, 3, "after restarting w3");

    // Lease-renewal fault: the lease key of the shard of job `skipper` is
    // replaced by a list, so its owner's renewals (and claims, acquisitions)
    // fail with WRONGTYPE while its heartbeats succeed. Its leases lapse
    // (lease losses); once the key is removed it takes them back, runs the
    // late fires (catch-up) and skips those of `skipper` (misfires).
    let shard_count = status(&cli)["shard_count"]
        .as_u64()
        .map_or(shardcron_core::DEFAULT_SHARD_COUNT, |n| n as u32);
    let shard = shardcron_core::shard_of("skipper", shard_count);
    let lease_key = shardcron_coord::Keyspace::new(NAMESPACE).lease(shard);
    let holder = cli
        .redis()
        .command(&["GET", &lease_key])
        .expect("GET lease");
    let victim = holder.split('/').next().unwrap_or("").to_owned();
    assert!(
        NODES.contains(&victim.as_str()),
        "lease {lease_key} held by {holder:?}"
    );
    cli.redis()
        .command(&[
            "EVAL",
            "redis.call('DEL', KEYS[1]); redis.call('RPUSH', KEYS[1], 'fault'); return 1",
            "1",
            &lease_key,
        ])
        .expect("corrupt lease key");
    std::thread::sleep(Duration::from_millis(3500));
    cli.redis()
        .command(&["DEL", &lease_key])
        .expect("restore lease key");
    wait_settled(&cli, 3, "after the lease fault");

    // Job changes reach their owners: job propagation delay (measured by the
    // owner, so done last, when no owner dies any more).
    for i in 0..3 {
        put_job(
            &cli,
            &[
                "--id",
                &format!("ok-{i}"),
                "--schedule",
                "@every 1s",
                "--exec",
                "true v2",
            ],
        );
    }
    let fleet_done = started.elapsed();

    // --- Prometheus has scraped every worker, with the post-fault state
    wait_for(Duration::from_secs(15), || {
        prom.query("count(up{job=\"shardcron\"} == 1) == 3")
            .is_ok_and(|d| result_len(&d) == 1)
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus does not scrape the 3 workers: {:?}\n{}",
            prom.query("up"),
            log_tail(&prom.log, 20)
        )
    });
    std::thread::sleep(Duration::from_secs(3));

    // --- rules as Prometheus loaded them
    let expected_rules = std::fs::read_to_string(&alerts)
        .expect("alerts.yaml")
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("- alert:") || t.starts_with("- record:")
        })
        .count();
    let mut rules: Vec<(String, String)> = Vec::new();
    wait_for(Duration::from_secs(10), || {
        let v = prom.get_json("/api/v1/rules");
        rules.clear();
        let mut evaluated = true;
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                rules.push((
                    r["name"].as_str().unwrap_or("?").to_owned(),
                    r["query"].as_str().unwrap_or("").to_owned(),
                ));
                evaluated &= r["health"] == "ok";
                assert!(
                    r["health"] != "err",
                    "rule {} fails to evaluate: {}",
                    r["name"],
                    r["lastError"]
                );
            }
        }
        evaluated && rules.len() == expected_rules
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus loaded {} of {expected_rules} rules or did not evaluate them: {rules:?}",
            rules.len()
        )
    });

    // --- every expression
    struct Check {
        origin: String,
        expr: String,
        need_series: bool,
    }
    let mut checks = Vec::new();
    for e in &dash_exprs {
        let expr = substitute(&e.expr, NAMESPACE);
        checks.push(Check {
            origin: e.origin.clone(),
            expr,
            need_series: true,
        });
    }
    for e in &var_queries {
        checks.push(Check {
            origin: e.origin.clone(),
            expr: label_values_query(&substitute(&e.expr, NAMESPACE)),
            need_series: true,
        });
    }
    let mut signal_count = 0;
    for (name, query) in &rules {
        checks.push(Check {
            origin: format!("alert {name}"),
            expr: query.clone(),
            need_series: false,
        });
        for s in alert_signals(query) {
            signal_count += 1;
            checks.push(Check {
                origin: format!("alert {name} (signal)"),
                expr: s,
                need_series: true,
            });
        }
    }
    let leftover: Vec<&Check> = checks.iter().filter(|c| c.expr.contains('$')).collect();
    assert!(
        leftover.is_empty(),
        "unsubstituted variables: {:?}",
        leftover
            .iter()
            .map(|c| (&c.origin, &c.expr))
            .collect::<Vec<_>>()
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures: Vec<String>;
    let mut nan_only;
    loop {
        failures = Vec::new();
        let mut only_invalid = true;
        nan_only = 0;
        for c in &checks {
            match prom.query(&c.expr) {
                Err(e) => failures.push(format!("INVALID  {}\n    {}\n    {e}", c.origin, c.expr)),
                Ok(d) if c.need_series && result_len(&d) == 0 => {
                    only_invalid = false;
                    failures.push(format!("NO SERIES {}\n    {}", c.origin, c.expr));
                }
                Ok(d) => {
                    let all_nan = d["result"].as_array().is_some_and(|r| {
                        !r.is_empty() && r.iter().all(|s| s["value"][1].as_str() == Some("NaN"))
                    });
                    nan_only += usize::from(all_nan);
                }
            }
        }
        if failures.is_empty()
            || (only_invalid && !failures.is_empty())
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if !failures.is_empty() {
        let firing = prom.get_json("/api/v1/alerts");
        panic!(
            "{} of {} expressions failed (Prometheus on 127.0.0.1:{}):\n{}\n\nalerts: {}\nfleet status: {}",
            failures.len(),
            checks.len(),
            prom.port,
            failures.join("\n"),
            firing["data"]["alerts"],
            status(&cli)
        );
    }

    let firing = prom.get_json("/api/v1/alerts");
    let states: Vec<String> = firing["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} ({})",
                a["labels"]["alertname"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!(
        "verified {} dashboard expressions ({} dashboards), {} variable queries and {} alert rules \
         ({} signal expressions) against Prometheus: all valid, all returning series \
         ({} only NaN), fault victim {victim}; fleet phase {:.1}s, total {:.1}s",
        dash_exprs.len(),
        DASHBOARDS.len(),
        var_queries.len(),
        rules.len(),
        signal_count,
        nan_only,
        fleet_done.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("alerts pending/firing on the test fleet: {states:?}");
    drop(prom);
    drop(workers);
}

#[test]
fn alert_signal_extraction() {
    assert_eq!(
        alert_signals("sum by (namespace) (shardcron_members) == 0 or absent(shardcron_members)"),
        vec![
            "sum by (namespace) (shardcron_members)",
            "shardcron_members"
        ]
    );
    assert_eq!(
        alert_signals("sum(rate(x{outcome=~\"a|b\"}[10m])) / sum(rate(x[10m])) > 0.1"),
        vec!["sum(rate(x{outcome=~\"a|b\"}[10m])) / sum(rate(x[10m]))"]
    );
    assert_eq!(alert_signals("(a - b) > 0"), vec!["(a - b)"]);
    assert_eq!(alert_signals("(a > 0)"), vec!["a"]);
    assert_eq!(alert_signals("x{l!=\"v\"} != 1"), vec!["x{l!=\"v\"}"]);
    assert_eq!(
        split_or("sort_desc(a) or b{l=\"x or y\"}"),
        vec!["sort_desc(a)", "b{l=\"x or y\"}"]
    );
    assert_eq!(
        label_values_query("label_values(shardcron_members{namespace=~\"ns\"}, node)"),
        "count by (node) (shardcron_members{namespace=~\"ns\"})"
    );
    assert_eq!(
        substitute(
            "rate(x{namespace=~\"$namespace\", node=~\"${node}\"}[$__rate_interval])",
            "ns"
        ),
        "rate(x{namespace=~\"ns\", node=~\".*\"}[30s])"
    );
    assert_eq!(
        metric_names("rate(shardcron_a_bucket[1m]) / foo_shardcron_b"),
        BTreeSet::from(["shardcron_a_bucket".to_owned()])
    );
}
