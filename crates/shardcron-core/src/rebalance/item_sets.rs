//! Which items each member holds, with O(1) insert and remove.
//!
//! The balancer moves thousands of empty shards at S = 65,536; an ordered
//! set per member made inserting them the largest cost of a rebalance.
//! Every consumer breaks ties by item number, so the order within a set is
//! irrelevant and a vector with positions (swap-remove) suffices.

/// The items of every member.
pub(super) struct ItemSets {
    /// `sets[member]`: its items, in no particular order.
    sets: Vec<Vec<usize>>,
    /// `position[item]`: where the item sits in its member's vector.
    position: Vec<usize>,
}

impl ItemSets {
    /// Empty sets for `members` members and items `0..items`.
    pub(super) fn new(members: usize, items: usize) -> Self {
        Self {
            sets: vec![Vec::new(); members],
            position: vec![0; items],
        }
    }

    /// Adds `item` (not held by anyone) to `member`.
    pub(super) fn insert(&mut self, member: usize, item: usize) {
        self.position[item] = self.sets[member].len();
        self.sets[member].push(item);
    }

    /// Removes `item` from `member`, which holds it.
    pub(super) fn remove(&mut self, member: usize, item: usize) {
        let at = self.position[item];
        let set = &mut self.sets[member];
        set.swap_remove(at);
        if let Some(&moved) = set.get(at) {
            self.position[moved] = at;
        }
    }

    /// The items of `member`.
    pub(super) fn of(&self, member: usize) -> &[usize] {
        &self.sets[member]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_keep_every_set_exact() {
        let mut sets = ItemSets::new(2, 6);
        for item in 0..6 {
            sets.insert(item % 2, item);
        }
        sets.remove(0, 0);
        sets.remove(1, 5);
        sets.insert(1, 0);
        sets.remove(0, 4);
        let sorted = |m: usize| {
            let mut items = sets.of(m).to_vec();
            items.sort_unstable();
            items
        };
        assert_eq!(sorted(0), vec![2]);
        assert_eq!(sorted(1), vec![0, 1, 3]);
    }
}
