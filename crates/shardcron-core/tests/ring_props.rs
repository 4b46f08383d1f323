//! Properties of the shard ring that the whole fleet relies on: the map is a
//! pure function of the member *set*, membership changes move the minimum, and
//! the load is spread evenly enough. Plus a golden table that pins the exact
//! ownership so a change of hash or key layout cannot slip in unnoticed.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shardcron_core::stable_hash::stable_hash64;
use shardcron_core::{shard_of, RingConfig, ShardMap, DEFAULT_SHARD_COUNT};

/// The checked-in golden table: `shard owner` per line, for
/// `["node-a", "node-b", "node-c"]` with `RingConfig::default()`.
///
/// To regenerate after an *intended* change (which reshuffles every deployed
/// fleet!): `SHARDCRON_BLESS=1 cargo test -p shardcron-core --test ring_props golden`.
/// The file must exist to compile; `touch` it first if it was deleted.
const GOLDEN_TABLE: &str = include_str!("golden/ring_3_members_1024.txt");
const GOLDEN_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/ring_3_members_1024.txt"
);

fn golden_map() -> ShardMap {
    ShardMap::compute(&["node-a", "node-b", "node-c"], RingConfig::default())
}

fn render(map: &ShardMap) -> String {
    (0..map.shard_count())
        .map(|shard| format!("{shard} {}\n", map.owner(shard).unwrap_or("-")))
        .collect()
}

#[test]
fn golden_ring_3_members_1024_shards() {
    let actual = render(&golden_map());
    if std::env::var("SHARDCRON_BLESS").as_deref() == Ok("1") {
        std::fs::write(GOLDEN_PATH, &actual).expect("write golden table");
        eprintln!("blessed {GOLDEN_PATH}");
        return;
    }
    assert!(
        !GOLDEN_TABLE.trim().is_empty(),
        "golden table {GOLDEN_PATH} is empty; generate it with SHARDCRON_BLESS=1"
    );
    let expected: Vec<&str> = GOLDEN_TABLE.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    assert_eq!(
        expected.len(),
        DEFAULT_SHARD_COUNT as usize,
        "golden table length"
    );
    let diffs: Vec<(&str, &str)> = expected
        .iter()
        .zip(&actual)
        .filter(|(e, a)| e != a)
        .map(|(e, a)| (*e, *a))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} of {} shards changed owner vs the golden table (expected, actual), first: {:?}",
        diffs.len(),
        expected.len(),
        &diffs[..diffs.len().min(5)]
    );
    assert_eq!(expected.len(), actual.len());
}

#[test]
fn golden_table_is_balanced_and_complete() {
    let map = golden_map();
    let counts = map.counts();
    assert_eq!(counts.len(), 3);
    assert_eq!(counts.values().sum::<u32>(), DEFAULT_SHARD_COUNT);
    assert!(map.balance().max_over_mean <= 1.5, "{:?}", map.balance());
}

#[test]
fn pinned_shard_of_values() {
    // Same golden values as the unit test, through the public re-export.
    assert_eq!(shard_of("backup-nightly", DEFAULT_SHARD_COUNT), 517);
    assert_eq!(shard_of("report:daily", DEFAULT_SHARD_COUNT), 403);
}

#[test]
fn fixed_fleets_stay_within_one_and_a_half_times_the_mean() {
    for n in 3..=10 {
        let members: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        let balance = ShardMap::compute(&members, RingConfig::default()).balance();
        assert!(balance.max_over_mean <= 1.5, "{n} members: {balance:?}");
    }
}

/// Textbook consistent hashing, written without the `hashring` crate: a shard
/// belongs to the member of the first virtual-node hash >= the shard's hash,
/// wrapping to the smallest. Documents (and checks) the exact key layout.
fn reference_owner(members: &[&str], vnodes: u32, shard: u32) -> Option<String> {
    let mut points: Vec<(u64, &str)> = Vec::new();
    for member in members {
        for index in 0..vnodes {
            let mut key = member.as_bytes().to_vec();
            key.push(b'#');
            key.extend_from_slice(&index.to_be_bytes());
            points.push((stable_hash64(&key), member));
        }
    }
    points.sort();
    let mut key = b"shard:".to_vec();
    key.extend_from_slice(&shard.to_be_bytes());
    let h = stable_hash64(&key);
    points
        .iter()
        .find(|(p, _)| *p >= h)
        .or(points.first())
        .map(|(_, m)| m.to_string())
}

#[test]
fn golden_map_matches_reference_model() {
    let map = golden_map();
    let members = ["node-a", "node-b", "node-c"];
    for shard in 0..map.shard_count() {
        let expected = reference_owner(&members, RingConfig::default().vnodes, shard);
        assert_eq!(
            map.owner(shard).map(str::to_string),
            expected,
            "shard {shard}"
        );
    }
}

fn member_id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,15}"
}

/// 1..=max distinct member ids, in sorted order.
fn member_set(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(member_id(), min..=max).prop_map(|s| s.into_iter().collect())
}

fn small_config() -> impl Strategy<Value = RingConfig> {
    (1u32..600, 1u32..64).prop_map(|(shard_count, vnodes)| RingConfig::new(shard_count, vnodes))
}

fn assert_same_owners(a: &ShardMap, b: &ShardMap) {
    assert_eq!(a.moved_between(b), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn order_and_duplicates_do_not_matter(
        (members, shuffled) in member_set(1, 10)
            .prop_flat_map(|m| (Just(m.clone()), Just(m).prop_shuffle())),
        dup_mask in prop::collection::vec(any::<bool>(), 10),
    ) {
        let mut noisy = shuffled.clone();
        noisy.extend(shuffled.iter().zip(&dup_mask).filter(|(_, d)| **d).map(|(m, _)| m.clone()));
        let config = RingConfig::default();
        let base = ShardMap::compute(&members, config);
        let other = ShardMap::compute(&noisy, config);
        prop_assert_eq!(&base, &other);
        assert_same_owners(&base, &other);
        let sorted: Vec<&str> = base.members().iter().map(|m| m.as_ref()).collect();
        prop_assert_eq!(sorted, members.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn removing_a_member_moves_only_its_shards(
        members in member_set(2, 10),
        pick in any::<prop::sample::Index>(),
        config in prop_oneof![Just(RingConfig::default()), small_config()],
    ) {
        let removed = members[pick.index(members.len())].clone();
        let remaining: Vec<&String> = members.iter().filter(|m| **m != removed).collect();
        let before = ShardMap::compute(&members, config);
        let after = ShardMap::compute(&remaining, config);
        for shard in 0..config.shard_count {
            let (old, new) = (before.owner(shard), after.owner(shard));
            prop_assert!(new.is_some());
            if old != Some(removed.as_str()) {
                prop_assert_eq!(old, new, "shard {} moved although its owner stayed", shard);
            } else {
                prop_assert_ne!(new, Some(removed.as_str()));
            }
        }
        prop_assert_eq!(
            before.moved_between(&after) as usize,
            before.shards_of(&removed).len()
        );
    }

    #[test]
    fn adding_a_member_moves_shards_only_to_it(
        members in member_set(1, 10),
        newcomer in member_id(),
        config in prop_oneof![Just(RingConfig::default()), small_config()],
    ) {
        prop_assume!(!members.contains(&newcomer));
        let before = ShardMap::compute(&members, config);
        let mut grown = members.clone();
        grown.push(newcomer.clone());
        let after = ShardMap::compute(&grown, config);
        for shard in 0..config.shard_count {
            let (old, new) = (before.owner(shard), after.owner(shard));
            if old != new {
                prop_assert_eq!(new, Some(newcomer.as_str()), "shard {} moved to an old member", shard);
            }
        }
        prop_assert_eq!(
            before.moved_between(&after) as usize,
            after.shards_of(&newcomer).len()
        );
    }

    #[test]
    fn every_shard_has_an_owner(
        members in member_set(1, 12),
        config in prop_oneof![Just(RingConfig::default()), small_config()],
    ) {
        let map = ShardMap::compute(&members, config);
        let set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let mut total = 0usize;
        for shard in 0..config.shard_count {
            let owner = map.owner(shard);
            prop_assert!(owner.is_some_and(|o| set.contains(o)), "shard {} owner {:?}", shard, owner);
        }
        for member in &members {
            let shards = map.shards_of(member);
            prop_assert!(shards.windows(2).all(|w| w[0] < w[1]), "shards_of not ascending");
            total += shards.len();
        }
        prop_assert_eq!(total, config.shard_count as usize);
        let counts = map.counts();
        prop_assert_eq!(counts.len(), members.len());
        prop_assert_eq!(counts.values().map(|c| *c as usize).sum::<usize>(), total);
    }

    #[test]
    fn matches_reference_model(members in member_set(1, 6), config in small_config()) {
        let map = ShardMap::compute(&members, config);
        let ids: Vec<&str> = members.iter().map(String::as_str).collect();
        for shard in 0..config.shard_count {
            let expected = reference_owner(&ids, config.vnodes, shard);
            prop_assert_eq!(map.owner(shard).map(str::to_string), expected, "shard {}", shard);
        }
    }

    /// Load spread with the default config (1024 shards, 160 vnodes).
    ///
    /// Measured over 750,000 random member sets of 3..=10 members: max/mean
    /// stays under 1.5 for ~99.95% of them (never above 1.5 for <= 6
    /// members), the worst seen was 1.66 (10 members). A 1.5 bound would make
    /// this test flaky, so it asserts 1.75; the fixed-fleet test above keeps
    /// the 1.5 bound for concrete fleets.
    #[test]
    fn default_config_keeps_load_within_bounds(members in member_set(3, 10)) {
        let map = ShardMap::compute(&members, RingConfig::default());
        let balance = map.balance();
        prop_assert!(balance.max_over_mean <= 1.75, "{:?}", balance);
        prop_assert!(balance.min > 0, "{:?}", balance);
    }
}
