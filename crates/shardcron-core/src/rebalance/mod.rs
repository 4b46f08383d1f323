//! The sticky rebalance: the next placement from the previous one.
//!
//! [`ShardMap::place`] is a pure function of members and weights, and so it
//! re-packs: a tight load bound makes its walk cascade, and a member leaving
//! a fleet of 100 moves several times the ideal 1 % of the load. Starting
//! from the previous placement instead, [`ShardMap::rebalance`] moves only
//! what the bound requires.
//!
//! **The bound.** A member may carry at most the cap,
//! `max(W/N rounded up to a whole granule, floor(W·(1+ε)/N))`, and should
//! carry at least the floor, `floor(W·(1−2ε)/N)`. `W` and `N` leave out
//! shards heavier than the mean of the rest, each of which needs a member
//! of its own whatever the placement; the granule is the greatest common
//! divisor of the weights (800 equal jobs on 99 members put 9 on some
//! member, whatever ε says, and a cap of 8.48 jobs would make every
//! member that has 9 try to shed forever).
//!
//! 1. **Orphans.** Shards whose owner left (or had none) go, heaviest first,
//!    to the first member clockwise from their ring position with room
//!    (the same walk as [`ShardMap::place`]), else to the least loaded.
//! 2. **Shed.** While a member with more than one shard carries more than
//!    the cap, the most loaded one gives a shard away, by the cheapest of:
//!    - *direct*: to the least-loaded member, within the cap: the lightest
//!      shard that alone brings the giver under the cap, else its heaviest,
//!      preferring one that leaves the giver at least as loaded as the
//!      receiver (a newcomer must not take one big shard and make its giver
//!      pull the difference back in small ones);
//!    - *making room* (`making_room`): one of the eight least-loaded
//!      members first passes one lighter shard, else several (heaviest
//!      first, at most 256), to third members with room, then takes it;
//!    - *swap*: the receiver passes a lighter shard back to the giver;
//!    - *push*: the least-loaded member takes a shard although that puts
//!      it over the cap, if it ends up lighter than the giver was; it
//!      sheds in turn.
//! 3. **Pull.** While some member carries less than the floor (a member
//!    that just joined), the least loaded one takes one shard from the
//!    most loaded member that can give one: the heaviest that evens the
//!    pair out without swapping it (at most half their difference) and
//!    keeps the taker within the cap.
//!
//! Shed and pull alternate until neither moves; empty shards go through
//! the same steps by count.
//!
//! **Why it ends, and why nodes agree.** A direct shed, a making-room chain
//! and a swap each lower the total excess over the cap (every receiver ends
//! within it, the giver gets lighter); a pull keeps the excess and lowers
//! the sum of squared loads; a push lowers the sum of squares. A budget of
//! four moves per shard bounds the loop in any case. A placement where no
//! move applies yields itself, so rebalancing twice is rebalancing once
//! (nodes that compute it from the same inputs agree, and a stored result
//! is stable). Every tie is broken by member name and shard number, so the
//! result is a pure function of (previous placement, members, weights,
//! ring settings).
//!
//! Earlier versions re-packed from scratch when a member stayed over the
//! cap and the re-pack carried less on its busiest member. With
//! making-room chains and pushes that never happens in `shardcron-bench
//! sim` any more (its tables are the same without the branch), and the
//! re-pack moved up to 64 times the ideal load, so there is none: a member
//! that no move can fix stays over the cap by less than one of its shards.

use std::sync::Arc;

mod balancer;
mod item_sets;
mod making_room;

use balancer::Balancer;

use crate::load::LoadUnits;
use crate::placement::{first_fit_walk, shard_home, ShardWeights};
use crate::placement_record::PlacementRecord;
use crate::ring::{sorted_ids, sorted_ring_points, RingConfig, ShardMap};

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
    /// keep: it settles a fresh [`ShardMap::place`] instead.
    pub fn rebalance<S: AsRef<str>>(
        &self,
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> ShardMap {
        if config.shard_count != self.shard_count() {
            return ShardMap::place(members, weights, config).sticky_pass(members, weights, config);
        }
        self.sticky_pass(members, weights, config)
    }

    /// Orphans, shed and pull from this placement until no move is left.
    fn sticky_pass<S: AsRef<str>>(
        &self,
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> ShardMap {
        let ids = sorted_ids(members);
        let dense = weights.dense(config.shard_count);
        let member_list: Vec<Arc<str>> = ids.iter().map(|id| Arc::from(*id)).collect();
        if ids.is_empty() {
            let owners = vec![None; dense.len()];
            return ShardMap::from_parts(config, member_list, owners, Some(dense));
        }
        let previous = self.owners_among(&ids);
        let points = sorted_ring_points(&ids, config.vnodes);
        let permille = config.load_bound_permille;
        let mut budget = dense.len().saturating_mul(4).max(64);
        let mut owners = previous.clone();

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
            for (item, owner) in balancer.owners.into_iter().enumerate() {
                owners[shards[item] as usize] = owner;
            }
        }
        ShardMap::from_parts(config, member_list, owners, Some(dense))
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
