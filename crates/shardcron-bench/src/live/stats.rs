//! Resource counters read around the measured window: Redis `INFO
//! commandstats` / `INFO cpu` (parsed here, pure) and this process's CPU
//! time from `getrusage` (every in-process worker runs in this process; the
//! redis-server is a separate process and is measured through `INFO cpu`).

use std::collections::BTreeMap;

/// Calls per command from the text of `INFO commandstats`
/// (`cmdstat_evalsha:calls=12,usec=…` lines), keyed by command name.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// `used_cpu_sys + used_cpu_user` seconds from the text of `INFO cpu`.
pub fn parse_redis_cpu(info: &str) -> f64 {
    info.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once(':')?;
            matches!(key, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// An integer field (e.g. `used_memory`) from the text of an `INFO` section.
pub fn parse_info_u64(info: &str, field: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == field).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Resident set size of this process in bytes (`VmRSS`; `None` off Linux).
pub fn process_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Per-command call deltas between two `INFO commandstats` snapshots,
/// without the `INFO` calls the benchmark itself makes.
pub fn command_deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, &calls)| {
            let earlier = before.get(name).copied().unwrap_or(0);
            (name.clone(), calls.saturating_sub(earlier))
        })
        .filter(|(_, delta)| *delta > 0)
        .collect()
}

/// User + system CPU seconds used so far by this process (0 if unavailable).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes into the zero-initialised struct we
    // pass, which is a plain C struct valid for any bit pattern.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_integer_info_field_and_this_process_rss() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        assert_eq!(parse_info_u64(info, "used_memory"), Some(1_048_576));
        assert_eq!(parse_info_u64(info, "used_memory_human"), None);
        assert_eq!(parse_info_u64(info, "missing"), None);
        assert!(process_rss_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn parses_info_sections() {
        let stats = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=1\r\n";
        let parsed = parse_commandstats(stats);
        assert_eq!(parsed.get("evalsha"), Some(&10));
        assert_eq!(parsed.get("info"), Some(&3));
        let before = BTreeMap::from([("evalsha".to_owned(), 4), ("info".to_owned(), 1)]);
        let deltas = command_deltas(&before, &parsed);
        assert_eq!(deltas, BTreeMap::from([("evalsha".to_owned(), 6)]));
        let cpu = "# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\nused_cpu_sys_children:9\r\n";
        assert!((parse_redis_cpu(cpu) - 3.75).abs() < 1e-9);
        assert!(process_cpu_seconds() >= 0.0);
    }
}
