//! What one membership change moves under `ShardMap::rebalance`: the
//! shards that must move, plus only what the load bound forces. Each case
//! is one that once moved several times the ideal (docs/ARCHITECTURE.md,
//! "Placement").

use shardcron_core::rebalance::moved;
use shardcron_core::{shard_of, RingConfig, ShardMap, ShardWeights};

fn members(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i:03}")).collect()
}

/// Load units of the shards `member` owns in `map`.
fn load_of(map: &ShardMap, member: &str) -> u128 {
    map.shards_of(member)
        .into_iter()
        .map(|shard| u128::from(map.weight(shard)))
        .sum()
}

/// A heavy-tailed mix: job `i` weighs one of 1, 6, 60 or 600 units times a
/// cost of 1..=5, drawn by a fixed hash, like an hourly / every-10-minute /
/// every-minute / every-6-seconds mix.
fn mixed_weights(jobs: usize) -> ShardWeights {
    ShardWeights::from_pairs(
        0,
        (0..jobs).map(|i| {
            let draw = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            let rate = match draw % 100 {
                0 => 600,
                1..=9 => 60,
                10..=39 => 6,
                _ => 1,
            };
            let cost = 1 + (draw / 100) % 5;
            (shard_of(&format!("job-{i}"), 1024), rate * cost * 1000)
        }),
    )
}

#[test]
fn whole_jobs_do_not_make_a_departure_reshuffle() {
    // 8 equal jobs per member on 100 members: after one leaves, 99 members
    // carry 800 jobs, so some carry 9 whatever ε says. The cap counts whole
    // jobs, so the leaver's jobs find room and little else moves (before,
    // a cap of 8.48 jobs made every member at 9 shed, and the departure
    // moved 4 to 6 times the leaver's load).
    let all = members(100);
    let unit = 86_400_000u64;
    let weights = ShardWeights::from_pairs(
        0,
        (0..800).map(|i| (shard_of(&format!("job-{i}"), 1024), unit)),
    );
    let config = RingConfig::default();
    let base = ShardMap::next_placement(None, &all, &weights, config);
    for leaver in 0..10 {
        let rest: Vec<String> = all.iter().filter(|m| **m != all[leaver]).cloned().collect();
        let next = base.rebalance(&rest, &weights, config);
        let (_, load) = moved(&base, &next);
        let forced = load_of(&base, &all[leaver]);
        assert!(
            u128::from(load) <= forced * 2,
            "leaver {leaver}: moved {load} for {forced} orphaned"
        );
        assert!(next.load_balance().max <= 9 * u128::from(unit));
    }
}

#[test]
fn a_heavy_orphan_moves_little_more_than_what_makes_room_for_it() {
    // The mixed jobs' heaviest shards are a sizeable part of a member's
    // load and nobody has that much room: whoever takes one passes lighter
    // shards on. What moves stays close to the orphaned load plus one
    // making-room per heavy orphan, never a re-pack of the fleet.
    let all = members(20);
    let weights = mixed_weights(2000);
    let config = RingConfig::default();
    let base = ShardMap::next_placement(None, &all, &weights, config);
    let mut worst: f64 = 0.0;
    for leaver in 0..20 {
        let rest: Vec<String> = all.iter().filter(|m| **m != all[leaver]).cloned().collect();
        let next = base.rebalance(&rest, &weights, config);
        let (_, load) = moved(&base, &next);
        let ratio = load as f64 / load_of(&base, &all[leaver]) as f64;
        worst = worst.max(ratio);
        let balance = next.load_balance();
        assert!(
            balance.max as f64 <= (balance.mean * 1.05).max(balance.heaviest_shard as f64) + 1.0,
            "leaver {leaver}: {balance:?}"
        );
    }
    assert!(
        worst < 2.0,
        "a departure moved {worst:.2}x the orphaned load"
    );
}

#[test]
fn a_newcomer_takes_its_share_without_a_shuffle_among_the_others() {
    // A member (re)joins: it should end up near the mean, and what moves is
    // what it takes, not a newcomer taking one big shard and its giver
    // pulling the difference back from everyone else.
    let all = members(10);
    let weights = mixed_weights(1000);
    let config = RingConfig::default();
    for joiner in 0..10 {
        let rest: Vec<String> = all.iter().filter(|m| **m != all[joiner]).cloned().collect();
        let before = ShardMap::next_placement(None, &rest, &weights, config);
        let after = before.rebalance(&all, &weights, config);
        let (_, load) = moved(&before, &after);
        let taken = load_of(&after, &all[joiner]);
        assert!(
            load as f64 <= taken as f64 * 1.15,
            "joiner {joiner}: moved {load}, the newcomer took {taken}"
        );
    }
}
