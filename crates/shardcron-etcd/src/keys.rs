//! The etcd keyspace of one namespace.
//!
//! Every key of namespace `ns` starts with `/shardcron/<ns>/`, so one
//! prefix deletes a namespace and several namespaces share a cluster
//! without sharing a key. Keys a watch must see (members, shard leases,
//! shard versions) share the sub-prefix `e/`, so one watch covers exactly
//! them and not the shard documents every claim rewrites.
//!
//! | key | value |
//! |---|---|
//! | `config` | ring settings (JSON) |
//! | `e/member/<id>` | member info (JSON), attached to the member's etcd lease |
//! | `e/lease/<shard>` | `holder\|token`, attached to the holder's etcd lease |
//! | `e/ver/<shard>` | the shard's version, rewritten whenever it moves (the `jobs:<shard>` event) |
//! | `fence/<shard>` | last fencing token handed out for the shard; never deleted |
//! | `shard/<shard>` | the shard's protocol state ([`shardcron_coord::ShardState`], JSON) |
//! | `job/<shard:05>/<id>` | the stored job (JSON) |
//! | `index/<id>` | empty: every job id, in order, for listing |
//! | `load` | live shard weights and their version (JSON) |
//! | `placed` | the weights snapshot placement reads (JSON) |
//! | `placement` | the stored placement and its version (JSON) |
//! | `runs/meta`, `runs/page/<seq>` | the namespace's run history in pages |
//! | `jobruns/<id>` | one job's last runs (JSON) |
//! | `jobhour/<id>` | the hour of the job's last history write |
//! | `compact` | `revision\|at_ms` of the last self-compaction ([`crate::compaction`]) |

/// Key builder of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of namespace `ns`.
    pub(crate) fn new(ns: &str) -> Self {
        Self {
            prefix: format!("/shardcron/{ns}/"),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Ring settings.
    pub(crate) fn config(&self) -> String {
        self.key("config")
    }

    /// Everything the event watch covers.
    pub(crate) fn events_prefix(&self) -> String {
        self.key("e/")
    }

    /// Members' prefix.
    pub(crate) fn member_prefix(&self) -> String {
        self.key("e/member/")
    }

    /// One member.
    pub(crate) fn member(&self, id: &str) -> String {
        self.key(&format!("e/member/{id}"))
    }

    /// Shard leases' prefix.
    pub(crate) fn lease_prefix(&self) -> String {
        self.key("e/lease/")
    }

    /// One shard's lease.
    pub(crate) fn lease(&self, shard: u32) -> String {
        self.key(&format!("e/lease/{shard}"))
    }

    /// Shard versions' prefix.
    pub(crate) fn ver_prefix(&self) -> String {
        self.key("e/ver/")
    }

    /// One shard's version.
    pub(crate) fn ver(&self, shard: u32) -> String {
        self.key(&format!("e/ver/{shard}"))
    }

    /// One shard's fence counter.
    pub(crate) fn fence(&self, shard: u32) -> String {
        self.key(&format!("fence/{shard}"))
    }

    /// One shard's protocol state.
    pub(crate) fn shard(&self, shard: u32) -> String {
        self.key(&format!("shard/{shard}"))
    }

    /// One shard's jobs' prefix.
    pub(crate) fn job_prefix(&self, shard: u32) -> String {
        self.key(&format!("job/{shard:05}/"))
    }

    /// One job.
    pub(crate) fn job(&self, shard: u32, id: &str) -> String {
        format!("{}{id}", self.job_prefix(shard))
    }

    /// The job index's prefix.
    pub(crate) fn index_prefix(&self) -> String {
        self.key("index/")
    }

    /// One job's index entry.
    pub(crate) fn index(&self, id: &str) -> String {
        self.key(&format!("index/{id}"))
    }

    /// Live shard weights.
    pub(crate) fn load(&self) -> String {
        self.key("load")
    }

    /// The weights snapshot.
    pub(crate) fn placed(&self) -> String {
        self.key("placed")
    }

    /// The stored placement.
    pub(crate) fn placement(&self) -> String {
        self.key("placement")
    }

    /// The namespace history's page list.
    pub(crate) fn runs_meta(&self) -> String {
        self.key("runs/meta")
    }

    /// One page of the namespace history.
    pub(crate) fn runs_page(&self, seq: u64) -> String {
        self.key(&format!("runs/page/{seq:020}"))
    }

    /// The per-job last-write hours' prefix.
    pub(crate) fn job_hour_prefix(&self) -> String {
        self.key("jobhour/")
    }

    /// The hour (record time) of one job's last history write.
    pub(crate) fn job_hour(&self, id: &str) -> String {
        self.key(&format!("jobhour/{id}"))
    }

    /// The last self-compaction's record.
    pub(crate) fn compact(&self) -> String {
        self.key("compact")
    }

    /// One job's history.
    pub(crate) fn job_runs(&self, id: &str) -> String {
        self.key(&format!("jobruns/{id}"))
    }
}

/// The end of the range of every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The part of `key` after `prefix`, as text.
pub(crate) fn suffix<'a>(key: &'a [u8], prefix: &str) -> Option<&'a str> {
    std::str::from_utf8(key.strip_prefix(prefix.as_bytes())?).ok()
}
