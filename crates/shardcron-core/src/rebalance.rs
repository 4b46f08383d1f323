//! The sticky rebalance: the next placement from the previous one.
//!
//! [`ShardMap::place`] is a pure function of members and weights, and so it
//! re-packs: a tight load bound makes its walk cascade, and a member leaving
//! a fleet of 100 moves several times the ideal 1 % of the load. Starting
//! from the previous placement instead, [`ShardMap::rebalance`] moves only
//! what the bound requires:
//!
//! 1. **Orphans.** Shards whose owner left (or had none) go, heaviest first,
//!    to the first member clockwise from their ring position with room
//!    (the same walk as [`ShardMap::place`]), else to the least loaded.
//! 2. **Shed.** While some member carries more than the cap
//!    (`max(ceil(W/N), floor(W·(1+ε)/N))`), the most loaded one gives away
//!    one shard: the lightest that alone brings it under the cap, else its
//!    heaviest, to the least-loaded member that stays within the cap. When
//!    no member has room for any of its shards, a two-step move makes room:
//!    a lightly loaded member first passes one of its lighter shards on (to
//!    a third member, or back in a swap).
//! 3. **Pull.** While some member carries less than `floor(W·(1−ε)/N)` (a
//!    member that just joined), the least loaded one takes one shard from the
//!    most loaded member that can give one: the heaviest that evens the pair
//!    out without swapping it (at most half their difference) and keeps the
//!    taker within the cap.
//!
//! If a member is still over the cap afterwards with more than one shard
//! (no single move fits anywhere; getting out would take swaps), the result
//! is the fresh [`ShardMap::place`] when that carries less on its busiest
//! member: one larger move instead of an overloaded member for good.
//!
//! Empty shards go through the same three steps by count. Every move goes
//! from a more to a less loaded member and strictly lowers the sum of
//! squared loads, so the loop ends; and a placement that needs no move
//! yields itself, so rebalancing twice is rebalancing once (nodes that
//! compute it from the same inputs agree, and a stored result is stable).
//! Every tie is broken by member name and shard number, so the result is a
//! pure function of (previous placement, members, weights, ring settings).

use std::sync::Arc;

use crate::load::LoadUnits;
use crate::placement::{capacity, first_fit_walk, least_loaded, shard_home, ShardWeights};
use crate::placement_record::PlacementRecord;
use crate::ring::{sorted_ring_points, RingConfig, ShardMap};

/// One balancing problem: item weights, current owners, member loads.
struct Balancer<'a> {
    weights: &'a [u128],
    owners: Vec<Option<u32>>,
    loads: Vec<u128>,
    /// Items per member, ascending (kept in step with `owners`).
    items: Vec<std::collections::BTreeSet<usize>>,
    cap: u128,
    floor: u128,
}

impl<'a> Balancer<'a> {
    fn new(weights: &'a [u128], owners: Vec<Option<u32>>, members: usize, permille: u32) -> Self {
        let mut loads = vec![0u128; members];
        let mut items = vec![std::collections::BTreeSet::new(); members];
        for (item, (owner, weight)) in owners.iter().zip(weights).enumerate() {
            if let Some(m) = owner.map(|m| m as usize).filter(|m| *m < members) {
                loads[m] += weight;
                items[m].insert(item);
            }
        }
        let (total, n) = divisible_load(weights, members);
        Self {
            weights,
            owners,
            loads,
            items,
            cap: capacity(total, n, permille),
            floor: total.saturating_mul(1000 - u128::from((2 * permille).min(1000)))
                / (1000 * n.max(1) as u128),
        }
    }

    fn give(&mut self, item: usize, to: u32) {
        let weight = self.weights[item];
        if let Some(from) = self.owners[item] {
            self.loads[from as usize] -= weight;
            self.items[from as usize].remove(&item);
        }
        self.loads[to as usize] += weight;
        self.items[to as usize].insert(item);
        self.owners[item] = Some(to);
    }

    /// Step 1: items without an owner, heaviest first.
    fn adopt_orphans(&mut self, mut walk: impl FnMut(usize, u128, &[u128], u128) -> Option<u32>) {
        let mut orphans: Vec<usize> = (0..self.weights.len())
            .filter(|&item| self.owners[item].is_none())
            .collect();
        orphans.sort_by_key(|&item| (std::cmp::Reverse(self.weights[item]), item));
        for item in orphans {
            let weight = self.weights[item];
            let to = walk(item, weight, &self.loads, self.cap)
                .unwrap_or_else(|| least_loaded(&self.loads));
            self.give(item, to);
        }
    }

    fn items_of(&self, member: u32) -> Vec<usize> {
        self.items[member as usize]
            .iter()
            .copied()
            .filter(|&item| self.weights[item] > 0)
            .collect()
    }

    /// The least-loaded member other than `except`: if it cannot take a
    /// shard within the cap, no member can.
    fn least_loaded_other(&self, except: u32) -> Option<(u32, u128)> {
        (0u32..)
            .zip(self.loads.iter().copied())
            .filter(|&(m, _)| m != except)
            .min_by_key(|&(m, load)| (load, m))
    }

    /// Step 2: members over the cap give shards away.
    fn shed(&mut self, budget: &mut usize) {
        let mut stuck = vec![false; self.loads.len()];
        while *budget > 0 {
            let Some((member, load)) = (0u32..)
                .zip(self.loads.iter().copied())
                .filter(|&(m, load)| !stuck[m as usize] && load > self.cap)
                .max_by_key(|&(m, load)| (load, std::cmp::Reverse(m)))
            else {
                return;
            };
            let excess = load - self.cap;
            let mut items = self.items_of(member);
            // The lightest that fixes it alone first, then heaviest first.
            items.sort_by_key(|&item| {
                let weight = self.weights[item];
                if weight >= excess {
                    (0, weight, item)
                } else {
                    (1, u128::MAX - weight, item)
                }
            });
            let receiver = self.least_loaded_other(member);
            let direct = receiver.and_then(|(to, to_load)| {
                items
                    .iter()
                    .copied()
                    .find(|&item| to_load + self.weights[item] <= self.cap)
                    .map(|item| (item, to))
            });
            if let Some((item, to)) = direct {
                self.give(item, to);
                *budget -= 1;
                continue;
            }
            match self.two_step(member, &items) {
                Some((item, to, making_room, room_to)) => {
                    self.give(making_room, room_to);
                    self.give(item, to);
                    *budget = budget.saturating_sub(2);
                }
                None => stuck[member as usize] = true,
            }
        }
    }

    /// A way out when no member has room for any of `member`'s shards:
    /// `member` gives `item` to `to` after `to` gives a lighter shard
    /// (`making_room`) to `room_to` (another member with room, else
    /// `member` itself: a swap), each within the cap. Searched over the
    /// eight least-loaded receivers and their lightest shards first.
    fn two_step(&self, member: u32, items: &[usize]) -> Option<(usize, u32, usize, u32)> {
        let mut receivers: Vec<(u32, u128)> = (0u32..)
            .zip(self.loads.iter().copied())
            .filter(|&(m, _)| m != member)
            .collect();
        receivers.sort_by_key(|&(m, load)| (load, m));
        for &item in items {
            let weight = self.weights[item];
            for &(to, to_load) in receivers.iter().take(8) {
                let Some(needed) = (to_load + weight).checked_sub(self.cap) else {
                    continue;
                };
                let mut own = self.items_of(to);
                own.sort_by_key(|&i| (self.weights[i], i));
                for making_room in own {
                    let small = self.weights[making_room];
                    if small < needed || small >= weight {
                        continue;
                    }
                    let room_to = receivers
                        .iter()
                        .find(|&&(m, load)| m != to && load + small <= self.cap)
                        .map(|&(m, _)| m);
                    if let Some(room_to) = room_to {
                        return Some((item, to, making_room, room_to));
                    }
                    // Nobody else has room for it either: swap the two
                    // (`to` stays within the cap, `member` gets lighter).
                    if to_load - small + weight <= self.cap {
                        return Some((item, to, making_room, member));
                    }
                }
            }
        }
        None
    }

    /// Whether a member still carries more than the cap with more than one
    /// shard (one shard heavier than the cap is not a balancing failure).
    fn stuck_over_cap(&self) -> bool {
        (0u32..)
            .zip(&self.loads)
            .any(|(m, load)| *load > self.cap && self.items[m as usize].len() > 1)
    }

    /// Step 3: members under the floor take shards from the most loaded.
    fn pull(&mut self, budget: &mut usize) {
        let mut stuck = vec![false; self.loads.len()];
        while *budget > 0 {
            let Some((taker, load)) = (0u32..)
                .zip(self.loads.iter().copied())
                .filter(|&(m, load)| !stuck[m as usize] && load < self.floor)
                .min_by_key(|&(m, load)| (load, m))
            else {
                return;
            };
            let mut givers: Vec<(u32, u128)> = (0u32..)
                .zip(self.loads.iter().copied())
                .filter(|&(m, giver_load)| m != taker && giver_load > load)
                .collect();
            givers.sort_by_key(|&(m, giver_load)| (std::cmp::Reverse(giver_load), m));
            // A move must even out the pair without swapping it (2w <= G - T,
            // and w < G - T so the sum of squared loads drops) and keep the
            // taker within the cap.
            let chosen = givers.into_iter().find_map(|(giver, giver_load)| {
                self.items[giver as usize]
                    .iter()
                    .copied()
                    .filter(|&item| {
                        let weight = self.weights[item];
                        let gap = giver_load - load;
                        weight < gap && 2 * weight <= gap && load + weight <= self.cap
                    })
                    .max_by_key(|&item| (self.weights[item], std::cmp::Reverse(item)))
            });
            match chosen {
                Some(item) => {
                    self.give(item, taker);
                    *budget -= 1;
                }
                None => stuck[taker as usize] = true,
            }
        }
    }
}

/// The load and member count the bound applies to: shards heavier than the
/// mean of what remains each need a member of their own, whatever the
/// placement, so they and their members are set aside (repeatedly, heaviest
/// first). Without this, one job heavier than the mean would raise the
/// floor out of everyone's reach and keep the others shuffling.
fn divisible_load(weights: &[u128], members: usize) -> (u128, usize) {
    let mut sorted: Vec<u128> = weights.iter().copied().filter(|w| *w > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut total: u128 = sorted.iter().sum();
    let mut n = members;
    for weight in sorted {
        if n <= 1 || weight * (n as u128) <= total {
            break;
        }
        total -= weight;
        n -= 1;
    }
    (total, n)
}

impl ShardMap {
    /// The placement a fleet converges to from what the store holds: the
    /// [`ShardMap::rebalance`] of the stored placement, or of a fresh
    /// [`ShardMap::place`] when none is stored or the record is unusable.
    /// Workers compute this and store it; status computes it to show what
    /// they will own.
    pub fn next_placement<S: AsRef<str>>(
        stored: Option<&PlacementRecord>,
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> ShardMap {
        match stored.and_then(|record| ShardMap::from_record(record, weights, config).ok()) {
            Some(previous) => previous.rebalance(members, weights, config),
            None => ShardMap::place(members, weights, config).rebalance(members, weights, config),
        }
    }

    /// The next placement from this one, for `members` and `weights`: moves
    /// only what the load bound requires (see the [module docs](self)).
    ///
    /// With a different shard count than this map's, there is nothing to
    /// keep and it is [`ShardMap::place`].
    pub fn rebalance<S: AsRef<str>>(
        &self,
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> ShardMap {
        if config.shard_count != self.shard_count() {
            return ShardMap::place(members, weights, config)
                .sticky_pass(members, weights, config)
                .0;
        }
        let (sticky, over_cap) = self.sticky_pass(members, weights, config);
        if !over_cap {
            return sticky;
        }
        // No move could bring a member back under the cap. Re-pack from
        // scratch (then settle that the same way) if it carries less on the
        // busiest member: one larger move now instead of an overloaded member
        // for good. Both candidates are pure functions of the inputs, and
        // the re-packed one is a fixed point of the pass, so rebalancing the
        // result again yields it unchanged.
        let (fresh, _) =
            ShardMap::place(members, weights, config).sticky_pass(members, weights, config);
        if fresh.load_balance().max < sticky.load_balance().max {
            fresh
        } else {
            sticky
        }
    }

    /// Orphans, shed and pull from this placement until no move is left;
    /// also says whether a member is still over the cap with several shards.
    fn sticky_pass<S: AsRef<str>>(
        &self,
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> (ShardMap, bool) {
        let mut ids: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
        ids.sort_unstable();
        ids.dedup();
        let dense = weights.dense(config.shard_count);
        let member_list: Vec<Arc<str>> = ids.iter().map(|id| Arc::from(*id)).collect();
        if ids.is_empty() {
            let owners = vec![None; dense.len()];
            return (
                ShardMap::from_parts(config, member_list, owners, Some(dense)),
                false,
            );
        }
        let index_of = |name: &str| ids.binary_search(&name).ok().map(|i| i as u32);
        let previous: Vec<Option<u32>> = (0..config.shard_count)
            .map(|shard| self.owner(shard).and_then(index_of))
            .collect();
        let points = sorted_ring_points(&ids, config.vnodes);
        let permille = config.load_bound_permille;
        let mut budget = dense.len().saturating_mul(4).max(64);
        let mut owners = previous.clone();
        let mut over_cap = false;

        // Weighted shards by weight, empty ones by count: two problems.
        for weighted in [true, false] {
            let shards: Vec<u32> = (0u32..)
                .zip(&dense)
                .filter(|(_, units)| (**units > 0) == weighted)
                .map(|(shard, _)| shard)
                .collect();
            let item_weights: Vec<u128> = shards
                .iter()
                .map(|&s| {
                    if weighted {
                        u128::from(dense[s as usize])
                    } else {
                        1
                    }
                })
                .collect();
            let item_owners = shards.iter().map(|&s| previous[s as usize]).collect();
            let mut balancer = Balancer::new(&item_weights, item_owners, ids.len(), permille);
            balancer.adopt_orphans(|item, weight, loads, cap| {
                first_fit_walk(&points, shard_home(&points, shards[item]), |m| {
                    loads[m as usize] + weight <= cap
                })
            });
            // Shed and pull until neither moves anything: a move of one can
            // open a way for the other.
            loop {
                let before = budget;
                balancer.shed(&mut budget);
                balancer.pull(&mut budget);
                if budget == before || budget == 0 {
                    break;
                }
            }
            if weighted && balancer.stuck_over_cap() {
                over_cap = true;
            }
            for (item, owner) in balancer.owners.into_iter().enumerate() {
                owners[shards[item] as usize] = owner;
            }
        }
        (
            ShardMap::from_parts(config, member_list, owners, Some(dense)),
            over_cap,
        )
    }
}

/// Shards whose owner differs between two placements, and the load on them.
pub fn moved(a: &ShardMap, b: &ShardMap) -> (u32, LoadUnits) {
    let shards = a.shard_count().max(b.shard_count());
    let mut count = 0u32;
    let mut load: LoadUnits = 0;
    for shard in 0..shards {
        if a.owner(shard) != b.owner(shard) {
            count += 1;
            load = load.saturating_add(b.weight(shard).max(a.weight(shard)));
        }
    }
    (count, load)
}
