//! One balancing problem and the moves that solve it: orphans, shed, pull.
//!
//! Items are shards (by weight, or empty shards by count); members are
//! indexes into the sorted member list. The module docs of
//! [`super`] say which move is taken when, and why the loop ends.

use super::item_sets::ItemSets;
use crate::placement::{granular_capacity, least_loaded, weight_granule};

/// One balancing problem: item weights, current owners, member loads.
pub(super) struct Balancer<'a> {
    /// Weight of every item.
    pub(super) weights: &'a [u128],
    /// Owner of every item (a member index), `None` for an orphan.
    pub(super) owners: Vec<Option<u32>>,
    /// Load of every member.
    pub(super) loads: Vec<u128>,
    /// Items per member (kept in step with `owners`).
    pub(super) items: ItemSets,
    /// Most a member may carry (see [`divisible_load`] and the module docs).
    pub(super) cap: u128,
    /// Least a member should carry: `(1 − 2ε)` of the mean.
    pub(super) floor: u128,
}

impl<'a> Balancer<'a> {
    /// The problem of `weights` owned as `owners` by `members` members at
    /// load bound `permille`.
    pub(super) fn new(
        weights: &'a [u128],
        owners: Vec<Option<u32>>,
        members: usize,
        permille: u32,
    ) -> Self {
        let mut loads = vec![0u128; members];
        let mut items = ItemSets::new(members, weights.len());
        for (item, (owner, weight)) in owners.iter().zip(weights).enumerate() {
            if let Some(m) = owner.map(|m| m as usize).filter(|m| *m < members) {
                loads[m] += weight;
                items.insert(m, item);
            }
        }
        let (total, n) = divisible_load(weights, members);
        let granule = weight_granule(weights.iter().copied());
        Self {
            weights,
            owners,
            loads,
            items,
            cap: granular_capacity(total, n, permille, granule),
            floor: total.saturating_mul(1000 - u128::from((2 * permille).min(1000)))
                / (1000 * n.max(1) as u128),
        }
    }

    /// Moves `item` to member `to`.
    pub(super) fn give(&mut self, item: usize, to: u32) {
        let weight = self.weights[item];
        if let Some(from) = self.owners[item] {
            self.loads[from as usize] -= weight;
            self.items.remove(from as usize, item);
        }
        self.loads[to as usize] += weight;
        self.items.insert(to as usize, item);
        self.owners[item] = Some(to);
    }

    /// Step 1: items without an owner, heaviest first.
    pub(super) fn adopt_orphans(
        &mut self,
        mut walk: impl FnMut(usize, u128, &[u128], u128) -> Option<u32>,
    ) {
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

    /// The weighted items of `member`.
    pub(super) fn items_of(&self, member: u32) -> Vec<usize> {
        self.items
            .of(member as usize)
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
    pub(super) fn shed(&mut self, budget: &mut usize) {
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
            if items.len() <= 1 {
                // One shard heavier than the cap: wherever it goes, its
                // member is over the cap (see `divisible_load`).
                stuck[member as usize] = true;
                continue;
            }
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
            // Prefer a shard that leaves `member` at or above the floor and
            // at least as loaded as the receiver: a newcomer taking one big
            // shard would make its giver pull the difference back in small
            // ones from everybody else.
            let direct = receiver.and_then(|(to, to_load)| {
                let fits = |item: &usize| to_load + self.weights[*item] <= self.cap;
                let keeps_order = |item: &usize| {
                    let weight = self.weights[*item];
                    2 * weight <= load - to_load && load - weight >= self.floor
                };
                items
                    .iter()
                    .copied()
                    .find(|item| fits(item) && keeps_order(item))
                    .or_else(|| items.iter().copied().find(fits))
                    .map(|item| (item, to))
            });
            if let Some((item, to)) = direct {
                self.give(item, to);
                *budget -= 1;
                continue;
            }
            // Making room costs what it moves: first a third member takes
            // one shard of the receiver, then several, and only then is
            // anything swapped back.
            let chain = self
                .two_step(member, &items, false)
                .or_else(|| self.make_room(member, &items))
                .or_else(|| self.two_step(member, &items, true));
            if let Some(chain) = chain {
                for &(small, room_to) in &chain.making_room {
                    self.give(small, room_to);
                }
                self.give(chain.item, chain.to);
                *budget = budget.saturating_sub(1 + chain.making_room.len());
                continue;
            }
            // Push: the least-loaded member takes a shard although that
            // puts it over the cap, as long as it ends up lighter than
            // `member` was; it sheds in turn (an ejection chain).
            let push = receiver.and_then(|(to, to_load)| {
                items
                    .iter()
                    .copied()
                    .find(|&item| to_load + self.weights[item] < load)
                    .map(|item| (item, to))
            });
            match push {
                Some((item, to)) => {
                    self.give(item, to);
                    *budget -= 1;
                }
                _ => stuck[member as usize] = true,
            }
        }
    }

    /// Step 3: members under the floor take shards from the most loaded.
    pub(super) fn pull(&mut self, budget: &mut usize) {
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
                self.items
                    .of(giver as usize)
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
