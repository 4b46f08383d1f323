//! In-memory side of delivery `at_least_once`: the same open entries,
//! recovery and closing rules as `claim.lua`, `recover.lua` and
//! `close.lua`, so the conformance suite holds both stores to one contract.

use super::Shard;
use crate::model::{CloseFire, HandBack, OpenFire, RecoverBatch};

impl Shard {
    /// The open entries, parsed, oldest fire first.
    pub fn open_fires(&self, shard: u32) -> Vec<OpenFire> {
        let mut fires: Vec<OpenFire> = self
            .open
            .iter()
            .filter_map(|(field, value)| OpenFire::parse(shard, field, value))
            .collect();
        fires.sort_by(|a, b| (a.scheduled_ms, &a.job_id).cmp(&(b.scheduled_ms, &b.job_id)));
        fires
    }

    /// `close.lua`: removes the entry (or marks it abandoned) only if it
    /// still names the closer.
    pub fn close(&mut self, close: &CloseFire) {
        let field = format!("{}@{}", close.job_id, close.scheduled_ms);
        let prefix = format!("{}|{}|{}|", close.holder, close.token, close.delivery);
        let Some(value) = self.open.get_mut(&field) else {
            return;
        };
        if !value.starts_with(&prefix) {
            return;
        }
        if !close.abandon {
            self.open.remove(&field);
        } else if !value.ends_with('!') {
            value.push('!');
        }
    }

    /// `recover.lua` after its lease check: per fire, whether its entry was
    /// still exactly as read and now names the caller (claim key too).
    pub fn recover(&mut self, batch: &RecoverBatch, claim_deadline: i64) -> Vec<bool> {
        let ours = format!("{}|{}", batch.holder, batch.token);
        batch
            .fires
            .iter()
            .map(|fire| {
                let field = fire.field();
                if self.open.get(&field) != Some(&fire.value()) {
                    return false;
                }
                let next = OpenFire {
                    holder: batch.holder.clone(),
                    token: batch.token,
                    delivery: fire.delivery + 1,
                    abandoned: false,
                    ..fire.clone()
                };
                self.open.insert(field.clone(), next.value());
                self.claims
                    .insert(field, (format!("{ours}|0"), claim_deadline));
                true
            })
            .collect()
    }

    /// `hand_back.lua` for one fire: whether it is handed back (now, or by
    /// an earlier call of the same holder), and whether this call wrote. The
    /// fire's record is its claim key, else the watermark at its ms.
    pub fn hand_back(&mut self, holder: &str, fire: &HandBack, deadline: i64) -> (bool, bool) {
        let field = fire.field();
        let Some((h, attempt)) = self
            .record(&fire.job_id, fire.scheduled_ms, &field)
            .and_then(super::split_claim_value)
        else {
            return (false, false);
        };
        if h != holder {
            return (false, false);
        }
        if attempt == "h" {
            return (true, false);
        }
        let landed = attempt
            .parse::<u64>()
            .is_ok_and(|a| fire.lost_attempts.contains(&a));
        if !landed {
            return (false, false);
        }
        let marker = format!("{holder}|{}|h", fire.token);
        self.claims.insert(field.clone(), (marker, deadline));
        match self.open.get_mut(&field) {
            None => {
                let entry = OpenFire {
                    shard: fire.shard,
                    job_id: fire.job_id.clone(),
                    scheduled_ms: fire.scheduled_ms,
                    kind: fire.kind,
                    holder: holder.to_owned(),
                    token: fire.token,
                    delivery: 0,
                    abandoned: true,
                };
                self.open.insert(field, entry.value());
            }
            Some(value) => {
                if value.starts_with(&format!("{holder}|")) && !value.ends_with('!') {
                    value.push('!');
                }
            }
        }
        (true, true)
    }
}
