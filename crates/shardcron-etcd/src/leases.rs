//! Shard leases on etcd leases: one etcd lease per holder, one key per
//! shard, fencing tokens from a never-deleted counter.
//!
//! * **Acquire.** A free shard's key `e/lease/<n>` = `holder|token` is
//!   created in a transaction that compares its mod revision with 0 (the key
//!   does not exist) and the fence key's with the revision read, and writes
//!   both; the key is attached to the holder's etcd lease, which is first
//!   extended by a keep-alive (or granted), so the key lives at least the
//!   TTL from when the request was sent, as the runtime counts. Two nodes
//!   racing for a shard: one transaction applies, the other's compare
//!   fails and it reads the winner.
//! * **Fencing token** = `max(fence + 1, node clock in µs)`, and `fence/<n>`
//!   is set to it in the same transaction. The fence key is never deleted
//!   and only moves by compare-and-set, so tokens strictly increase per
//!   shard across owners whatever the clocks say; the µs floor keeps the
//!   trait's promise that a token is at least store time in µs (and keeps
//!   tokens increasing should an etcd be restored from an old backup, as
//!   long as clocks do not go back by more than the writes lost).
//! * **Renew** is one keep-alive of the holder's etcd lease, which extends
//!   every shard key attached to it at once, then one read of the lease keys
//!   to answer per shard (a key that still reads `holder|token` on that
//!   etcd lease after the keep-alive lives at least until the keep-alive's
//!   arrival plus the TTL, which is after the caller's send time plus the
//!   TTL: the runtime's local validity stays conservative). A renewal with
//!   another TTL grants a new etcd lease and moves the named keys onto it.
//!   A key of the holder that renewals stop naming is deleted once it went
//!   unnamed for a TTL, as it would have expired on the other stores (the
//!   shared keep-alive would otherwise keep it alive).
//! * **Expiry is etcd's**: a holder that stops keeping its lease alive
//!   loses every shard key when etcd revokes the lease (TTL in whole
//!   seconds, rounded up, and never below etcd's minimum): later than the
//!   holder's local validity ends, never earlier.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use shardcron_coord::{CoordResult, LeaseGrant, LeaseInfo};

use crate::client::{never_sent, now_ms, text, ttl_secs};
use crate::coordinator::{EtcdLease, Inner};
use crate::error::is_lease_not_found;
use crate::shards::{parse_lease, read_leases};

impl Inner {
    /// Grants an etcd lease of `ttl` seconds.
    /// A grant that never reached a member is asked again (an extra
    /// lease granted by a lost reply only expires unused).
    pub(crate) async fn grant(&self, op: &'static str, ttl: i64) -> CoordResult<i64> {
        let mut tries = 0;
        loop {
            let mut client = self.etcd.client();
            match self.etcd.call(op, client.lease_grant(ttl, None)).await {
                Err(e) if tries < 2 && never_sent(&e) => tries += 1,
                other => return other.map(|granted| granted.id()),
            }
        }
    }

    /// One keep-alive of an etcd lease; its TTL afterwards (≤ 0: gone,
    /// which etcd also reports as "lease not found").
    pub(crate) async fn keep_alive_once(&self, op: &'static str, id: i64) -> CoordResult<i64> {
        let mut tries = 0;
        loop {
            match self.try_keep_alive(op, id).await {
                Err(e) if e.to_string().contains("lease not found") => return Ok(0),
                // Never reached a member: ask another (a keep-alive is
                // idempotent anyway).
                Err(e) if tries < 2 && never_sent(&e) => tries += 1,
                other => return other,
            }
        }
    }

    async fn try_keep_alive(&self, op: &'static str, id: i64) -> CoordResult<i64> {
        let mut client = self.etcd.client();
        let (mut keeper, mut stream) = self.etcd.call(op, client.lease_keep_alive(id)).await?;
        self.etcd.call(op, keeper.keep_alive()).await?;
        match self.etcd.call(op, stream.message()).await? {
            Some(reply) => Ok(reply.ttl()),
            None => Ok(0),
        }
    }

    /// Revokes an etcd lease, best effort (an error only leaves it to expire).
    pub(crate) async fn revoke_quietly(&self, id: i64) {
        let mut client = self.etcd.client();
        if let Err(e) = self
            .etcd
            .call("revoke lease", client.lease_revoke(id))
            .await
        {
            tracing::debug!(error = %e, "etcd lease revoke failed; it expires instead");
        }
    }

    fn holder_lease(&self, holder: &str) -> Option<EtcdLease> {
        self.holder_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(holder)
            .copied()
    }

    fn set_holder_lease(&self, holder: &str, lease: Option<EtcdLease>) {
        let mut leases = self.holder_leases.lock().unwrap_or_else(|p| p.into_inner());
        match lease {
            Some(l) => leases.insert(holder.to_owned(), l),
            None => leases.remove(holder),
        };
    }

    /// The holder's etcd lease of `ttl` seconds, freshly extended: the
    /// known one after a keep-alive, else a new one.
    ///
    /// Why the keep-alive: the runtime counts a new grant valid from the
    /// moment it sent the request plus the TTL. A key attached to an etcd
    /// lease last extended earlier would be revoked before that; extended
    /// (or granted) after the request was sent, it lives at least as long.
    async fn ensure_holder_lease(&self, holder: &str, ttl: i64) -> CoordResult<EtcdLease> {
        if let Some(l) = self.holder_lease(holder).filter(|l| l.ttl == ttl) {
            if self.keep_alive_once("acquire leases", l.id).await? > 0 {
                return Ok(l);
            }
        }
        let lease = EtcdLease {
            id: self.grant("acquire leases", ttl).await?,
            ttl,
        };
        self.set_holder_lease(holder, Some(lease));
        Ok(lease)
    }

    /// [`shardcron_coord::Coordinator::acquire_leases`].
    pub(crate) async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        let ttl = ttl_secs(ttl);
        let mut last = None;
        for _ in 0..3 {
            let lease = self.ensure_holder_lease(holder, ttl).await?;
            match self.try_acquire(shards, holder, lease.id).await {
                Err(e) if is_lease_not_found(&e) => {
                    // The holder's etcd lease expired: every key on it is
                    // gone; start over on a new one.
                    self.set_holder_lease(holder, None);
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| crate::client::unexpected("acquire leases")))
    }

    async fn try_acquire(
        &self,
        shards: &[u32],
        holder: &str,
        lease_id: i64,
    ) -> CoordResult<Vec<LeaseGrant>> {
        const OP: &str = "acquire leases";
        let mut distinct: Vec<u32> = shards.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut done: BTreeMap<u32, LeaseGrant> = BTreeMap::new();
        let mut pending = distinct;
        for _ in 0..crate::shards::MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let leases = read_leases(&self.etcd, &self.keys, OP, &pending).await?;
            let fence_keys: Vec<String> = pending.iter().map(|&n| self.keys.fence(n)).collect();
            let fences = self.etcd.get_many(OP, &fence_keys).await?;
            let floor = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000);
            let mut writes = Vec::new();
            let mut answers = Vec::new();
            for ((&n, read), fence) in pending.iter().zip(leases).zip(fences) {
                let key = self.keys.lease(n);
                match read.info {
                    Some(info) if info.holder == holder => {
                        let grant = LeaseGrant::Granted { token: info.token };
                        if read.lease_id == lease_id {
                            done.insert(n, grant);
                        } else {
                            // Ours, on an etcd lease we no longer keep
                            // alive: move it onto the current one.
                            writes.push(
                                Txn::new()
                                    .when([Compare::mod_revision(
                                        key.as_str(),
                                        CompareOp::Equal,
                                        read.mod_revision,
                                    )])
                                    .and_then([TxnOp::put(
                                        key.as_str(),
                                        format!("{holder}|{}", info.token),
                                        Some(PutOptions::new().with_lease(lease_id)),
                                    )]),
                            );
                            answers.push((n, grant));
                        }
                    }
                    Some(info) => {
                        done.insert(
                            n,
                            LeaseGrant::HeldBy {
                                holder: info.holder,
                                token: info.token,
                            },
                        );
                    }
                    None => {
                        let (last, fence_revision) = match &fence {
                            None => (0, 0),
                            Some(kv) => {
                                let value = text(kv, &format!("fence of shard {n}"))?;
                                let last: u64 = value.parse().map_err(|e| {
                                    crate::error::corrupt(format!("fence of shard {n}"), e)
                                })?;
                                (last, kv.mod_revision())
                            }
                        };
                        let token = last.saturating_add(1).max(floor);
                        writes.push(
                            Txn::new()
                                .when([
                                    Compare::mod_revision(key.as_str(), CompareOp::Equal, 0),
                                    Compare::mod_revision(
                                        self.keys.fence(n),
                                        CompareOp::Equal,
                                        fence_revision,
                                    ),
                                ])
                                .and_then([
                                    TxnOp::put(
                                        key.as_str(),
                                        format!("{holder}|{token}"),
                                        Some(PutOptions::new().with_lease(lease_id)),
                                    ),
                                    TxnOp::put(self.keys.fence(n), token.to_string(), None),
                                ]),
                        );
                        answers.push((n, LeaseGrant::Granted { token }));
                    }
                }
            }
            let applied = self.etcd.txns(OP, writes).await?;
            pending.clear();
            for ((n, grant), ok) in answers.into_iter().zip(applied) {
                if ok {
                    done.insert(n, grant);
                } else {
                    pending.push(n);
                }
            }
        }
        shards
            .iter()
            .map(|n| {
                done.get(n)
                    .cloned()
                    .ok_or_else(|| shardcron_coord::CoordError::Unreachable {
                        url: self.etcd.url.clone(),
                        message: format!("{OP}: shard {n} still contended; nothing written"),
                    })
            })
            .collect()
    }

    /// [`shardcron_coord::Coordinator::renew_leases`].
    pub(crate) async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        const OP: &str = "renew leases";
        let ttl_s = ttl_secs(ttl);
        let Some(current) = self.holder_lease(holder) else {
            // Nothing of this holder's is known to be alive here.
            return Ok(vec![false; leases.len()]);
        };
        let (lease, replaced) = if current.ttl == ttl_s {
            if self.keep_alive_once(OP, current.id).await? <= 0 {
                self.set_holder_lease(holder, None);
                return Ok(vec![false; leases.len()]);
            }
            (current, None)
        } else {
            let lease = EtcdLease {
                id: self.grant(OP, ttl_s).await?,
                ttl: ttl_s,
            };
            self.set_holder_lease(holder, Some(lease));
            (lease, Some(current.id))
        };
        let all = self
            .etcd
            .range(OP, &self.keys.lease_prefix(), None, 0, false)
            .await?;
        let prefix = self.keys.lease_prefix();
        let mut ours: HashMap<u32, (LeaseInfo, i64, i64)> = HashMap::new();
        for kv in &all {
            let Some(n) = crate::keys::suffix(kv.key(), &prefix).and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let Some(info) = std::str::from_utf8(kv.value()).ok().and_then(parse_lease) else {
                continue;
            };
            if info.holder == holder {
                ours.insert(n, (info, kv.lease(), kv.mod_revision()));
            }
        }
        let mut answers: Vec<Option<bool>> = Vec::with_capacity(leases.len());
        let mut moves = Vec::new();
        let mut moved_index = Vec::new();
        for (i, &(n, token)) in leases.iter().enumerate() {
            match ours.get(&n) {
                Some((info, on, _)) if info.token == token && *on == lease.id => {
                    answers.push(Some(true));
                }
                Some((info, _, revision)) if info.token == token => {
                    let key = self.keys.lease(n);
                    moves.push(
                        Txn::new()
                            .when([Compare::mod_revision(
                                key.as_str(),
                                CompareOp::Equal,
                                *revision,
                            )])
                            .and_then([TxnOp::put(
                                key.as_str(),
                                format!("{holder}|{token}"),
                                Some(PutOptions::new().with_lease(lease.id)),
                            )]),
                    );
                    moved_index.push(i);
                    answers.push(None);
                }
                _ => answers.push(Some(false)),
            }
        }
        let applied = self.etcd.txns(OP, moves).await?;
        for (&i, ok) in moved_index.iter().zip(applied) {
            answers[i] = Some(ok);
        }
        self.expire_unnamed(holder, leases, &ours, ttl).await?;
        if let Some(old) = replaced {
            // Only keys this renewal did not name are still on it: they
            // expire with it, as leases not renewed do.
            tracing::debug!(old, "holder lease replaced by one of another TTL");
        }
        Ok(answers.into_iter().map(|a| a.unwrap_or(false)).collect())
    }

    /// Deletes keys of `holder` that renewals have not named for a TTL:
    /// on the other stores they would have expired by now.
    async fn expire_unnamed(
        &self,
        holder: &str,
        named: &[(u32, u64)],
        ours: &HashMap<u32, (LeaseInfo, i64, i64)>,
        ttl: Duration,
    ) -> CoordResult<()> {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut unnamed = self.unnamed_since.lock().unwrap_or_else(|p| p.into_inner());
            unnamed.retain(|(h, n, token), _| {
                h != holder
                    || ours.get(n).is_some_and(|(info, _, _)| info.token == *token)
                        && !named.contains(&(*n, *token))
            });
            for (&n, (info, _, revision)) in ours {
                if named.contains(&(n, info.token)) {
                    continue;
                }
                let since = *unnamed
                    .entry((holder.to_owned(), n, info.token))
                    .or_insert(now);
                if now.duration_since(since) >= ttl {
                    expired.push((n, *revision));
                }
            }
        }
        if expired.is_empty() {
            return Ok(());
        }
        let deletes: Vec<Txn> = expired
            .iter()
            .map(|&(n, revision)| {
                Txn::new()
                    .when([Compare::mod_revision(
                        self.keys.lease(n),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::delete(self.keys.lease(n), None)])
            })
            .collect();
        self.etcd.txns("renew leases", deletes).await?;
        Ok(())
    }

    /// [`shardcron_coord::Coordinator::release_leases`].
    pub(crate) async fn release_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<bool>> {
        let deletes: Vec<Txn> = leases
            .iter()
            .map(|&(n, token)| {
                let key = self.keys.lease(n);
                Txn::new()
                    .when([Compare::value(
                        key.as_str(),
                        CompareOp::Equal,
                        format!("{holder}|{token}"),
                    )])
                    .and_then([TxnOp::delete(key.as_str(), None)])
            })
            .collect();
        self.etcd.txns("release leases", deletes).await
    }

    /// [`shardcron_coord::Coordinator::lease_holders`].
    pub(crate) async fn lease_holders(
        &self,
        shards: &[u32],
    ) -> CoordResult<Vec<Option<LeaseInfo>>> {
        Ok(read_leases(&self.etcd, &self.keys, "lease holders", shards)
            .await?
            .into_iter()
            .map(|l| l.info)
            .collect())
    }
}
