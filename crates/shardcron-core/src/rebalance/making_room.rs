//! Making room when no member has room for any shard of an overloaded one.
//!
//! A mixed fleet's heavy shards are a sizeable part of a member's load, and
//! every member sits within ε of the mean, so an orphaned heavy shard fits
//! nowhere as it is. Rather than re-packing the fleet, a lightly loaded
//! member passes some of its own (lighter) shards to third members with
//! room and then takes the heavy one: the load moved is the heavy shard
//! plus what had to make way for it, close to the least any placement
//! within the cap could move.

use super::balancer::Balancer;

/// Most shards one making-room chain moves: room for a shard nearly as
/// heavy as the mean, in a fleet whose members each have ε of the mean to
/// spare, takes about 1/ε small shards.
const MAX_MAKING_ROOM_MOVES: usize = 256;

/// Moves that get one shard of an overloaded member onto a receiver.
pub(super) struct RoomChain {
    /// The overloaded member's shard.
    pub(super) item: usize,
    /// Its receiver.
    pub(super) to: u32,
    /// What the receiver passes on first: (its shard, to whom).
    pub(super) making_room: Vec<(usize, u32)>,
}

impl Balancer<'_> {
    /// A way out when no member has room for any of `member`'s shards:
    /// `member` gives `item` to `to` (one of the eight least-loaded members)
    /// after `to` gives a lighter shard (`making_room`) to `room_to`, each
    /// within the cap. Without `swap`, `room_to` is a third member with
    /// room; with it, `member` itself (the two trade shards), which is only
    /// tried when no third member can help. Lightest shards of `to` first.
    pub(super) fn two_step(&self, member: u32, items: &[usize], swap: bool) -> Option<RoomChain> {
        let mut receivers: Vec<(u32, u128)> = (0u32..)
            .zip(self.loads.iter().copied())
            .filter(|&(m, _)| m != member)
            .collect();
        receivers.sort_by_key(|&(m, load)| (load, m));
        for &(to, to_load) in receivers.iter().take(8) {
            let mut own = self.items_of(to);
            own.sort_by_key(|&i| (self.weights[i], i));
            for &item in items {
                let weight = self.weights[item];
                let Some(needed) = (to_load + weight).checked_sub(self.cap) else {
                    continue;
                };
                for &making_room in &own {
                    let small = self.weights[making_room];
                    if small < needed || small >= weight {
                        continue;
                    }
                    if swap {
                        // `to` stays within the cap, `member` gets lighter.
                        return Some(RoomChain {
                            item,
                            to,
                            making_room: vec![(making_room, member)],
                        });
                    }
                    let room_to = receivers
                        .iter()
                        .find(|&&(m, load)| m != to && load + small <= self.cap)
                        .map(|&(m, _)| m);
                    if let Some(room_to) = room_to {
                        return Some(RoomChain {
                            item,
                            to,
                            making_room: vec![(making_room, room_to)],
                        });
                    }
                }
            }
        }
        None
    }

    /// A way out when no single shard makes room: `to` (one of the eight
    /// least-loaded members) passes several of its shards to third members
    /// with room, heaviest first among those not larger than what is still
    /// needed, until `member`'s `item` fits it within the cap. At most
    /// [`MAX_MAKING_ROOM_MOVES`] making-room moves.
    pub(super) fn make_room(&self, member: u32, items: &[usize]) -> Option<RoomChain> {
        let mut by_load: Vec<(u128, u32)> = (0u32..)
            .zip(self.loads.iter().copied())
            .filter(|&(m, _)| m != member)
            .map(|(m, load)| (load, m))
            .collect();
        by_load.sort_unstable();
        for &(to_load, to) in by_load.iter().take(8) {
            let mut own = self.items_of(to);
            own.sort_by_key(|&i| (std::cmp::Reverse(self.weights[i]), i));
            for &item in items.iter().take(8) {
                let weight = self.weights[item];
                let Some(needed) = (to_load + weight).checked_sub(self.cap) else {
                    continue;
                };
                if needed >= weight {
                    continue;
                }
                if let Some(making_room) =
                    self.shed_plan(&by_load, (member, to), &own, needed, weight)
                {
                    return Some(RoomChain {
                        item,
                        to,
                        making_room,
                    });
                }
            }
        }
        None
    }

    /// Shards of `own` (heaviest first) that leave for third members with
    /// room, totalling at least `needed`, each lighter than `limit`; the
    /// third members are taken least-loaded first from `by_load` (ascending),
    /// skipping `except`. `None` if that is not possible in
    /// [`MAX_MAKING_ROOM_MOVES`] moves.
    fn shed_plan(
        &self,
        by_load: &[(u128, u32)],
        except: (u32, u32),
        own: &[usize],
        needed: u128,
        limit: u128,
    ) -> Option<Vec<(usize, u32)>> {
        // Third members least loaded first, with what the plan adds to them.
        let mut thirds: Vec<(u128, u32)> = by_load
            .iter()
            .copied()
            .filter(|&(_, m)| m != except.0 && m != except.1)
            .collect();
        let mut left: Vec<usize> = own.to_vec();
        let mut moves = Vec::new();
        let mut remaining = needed;
        while remaining > 0 && moves.len() < MAX_MAKING_ROOM_MOVES {
            let (slot, &(room_load, room_to)) = thirds
                .iter()
                .enumerate()
                .min_by_key(|(_, &(load, m))| (load, m))?;
            let fits = |i: &usize| room_load + self.weights[*i] <= self.cap;
            let pick = left
                .iter()
                .copied()
                .find(|i| self.weights[*i] <= remaining && fits(i))
                .or_else(|| {
                    left.iter()
                        .rev()
                        .copied()
                        .find(|i| fits(i) && self.weights[*i] < limit)
                })?;
            left.retain(|&i| i != pick);
            thirds[slot].0 += self.weights[pick];
            remaining = remaining.saturating_sub(self.weights[pick]);
            moves.push((pick, room_to));
        }
        (remaining == 0).then_some(moves)
    }
}
