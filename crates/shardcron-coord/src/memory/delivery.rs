//! In-memory side of delivery `at_least_once`: the same open entries,
//! recovery and closing rules as `claim.lua`, `recover.lua` and
//! `close.lua`, so the conformance suite holds both stores to one contract.

use super::Shard;
use crate::model::{CloseFire, OpenFire, RecoverBatch};

impl Shard {
    /// The open entries, parsed, oldest fire first.
    pub(super) fn open_fires(&self, shard: u32) -> Vec<OpenFire> {
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
    pub(super) fn close(&mut self, close: &CloseFire) {
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
    pub(super) fn recover(&mut self, batch: &RecoverBatch, claim_deadline: i64) -> Vec<bool> {
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
}
