//! The store contract of delivery `at_least_once`, run against both
//! coordinators: open entries from claim to terminal record, recovery under
//! a lease (once per entry), closing that spares a recovered fire, and the
//! hand-back of fires whose claim reply was lost.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{
    BatchOutcome, ClaimOutcome, CloseFire, Coordinator, FireClaim, FireKind, HandBack, OpenFire,
    RecoverBatch, RecoverOutcome,
};
use shardcron_core::shard_of;

mod common;

use common::{acquire, first_attempt, job, one_batch, Env, RING};

const RETENTION: Duration = Duration::from_secs(120);

async fn claim(
    c: &Arc<dyn Coordinator>,
    shard: u32,
    holder: &str,
    token: u64,
    fires: Vec<FireClaim>,
) -> Vec<ClaimOutcome> {
    match c
        .claim_fires(&one_batch(shard, holder, token, fires), RETENTION)
        .await
        .expect("claim")
        .remove(0)
    {
        BatchOutcome::Claimed(codes) => codes,
        BatchOutcome::LeaseLost => panic!("lease lost"),
    }
}

async fn open(c: &Arc<dyn Coordinator>, shard: u32) -> Vec<OpenFire> {
    c.open_fires(&[shard]).await.expect("open fires").remove(0)
}

async fn recover(
    c: &Arc<dyn Coordinator>,
    shard: u32,
    holder: &str,
    token: u64,
    fires: Vec<OpenFire>,
) -> RecoverOutcome {
    let batch = RecoverBatch {
        shard,
        holder: holder.into(),
        token,
        fires,
    };
    c.recover_fires(&[batch], RETENTION)
        .await
        .expect("recover")
        .remove(0)
}

fn close(shard: u32, job: &str, at: i64, holder: &str, token: u64) -> CloseFire {
    close_delivery(shard, job, at, holder, token, 1)
}

fn close_delivery(
    shard: u32,
    job: &str,
    at: i64,
    holder: &str,
    token: u64,
    delivery: u32,
) -> CloseFire {
    CloseFire {
        shard,
        job_id: job.into(),
        scheduled_ms: at,
        holder: holder.into(),
        token,
        delivery,
        abandon: false,
    }
}

/// Puts job `alo`, leases its shard to `n1/a` and claims its fire at 1000
/// (of `kind`) tracked; returns the shard and the token.
async fn one_tracked_claim(c: &Arc<dyn Coordinator>, kind: FireKind) -> (u32, u64) {
    let v = c.put_job(&job("alo"), None).await.expect("put").version;
    let shard = shard_of("alo", RING.shard_count);
    let t = acquire(c, shard, "n1/a").await;
    assert_eq!(
        claim(
            c,
            shard,
            "n1/a",
            t,
            vec![first_attempt("alo", 1000, v, kind).tracked()]
        )
        .await,
        vec![ClaimOutcome::Claimed]
    );
    (shard, t)
}

fn abandon(shard: u32, job: &str, at: i64, holder: &str, token: u64) -> CloseFire {
    CloseFire {
        abandon: true,
        ..close(shard, job, at, holder, token)
    }
}

async fn a_tracked_claim_stays_open_until_its_holder_closes_it(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("alo"), None).await.expect("put").version;
    let shard = shard_of("alo", RING.shard_count);
    let t = acquire(&c, shard, "n1/a").await;
    let codes = claim(
        &c,
        shard,
        "n1/a",
        t,
        vec![
            first_attempt("alo", 1000, v, FireKind::Scheduled).tracked(),
            first_attempt("alo", 2000, v, FireKind::Scheduled),
        ],
    )
    .await;
    assert_eq!(codes, vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
    // Only the tracked fire is open; an untracked claim writes nothing more.
    let entries = open(&c, shard).await;
    assert_eq!(
        entries,
        vec![OpenFire {
            shard,
            job_id: "alo".into(),
            scheduled_ms: 1000,
            kind: FireKind::Scheduled,
            holder: "n1/a".into(),
            token: t,
            delivery: 1,
            abandoned: false,
        }]
    );
    // A claim refused (already claimed) opens nothing.
    let again = claim(
        &c,
        shard,
        "n1/a",
        t,
        vec![first_attempt("alo", 1000, v, FireKind::Scheduled).tracked()],
    )
    .await;
    assert_eq!(again, vec![ClaimOutcome::AlreadyClaimed]);
    assert_eq!(open(&c, shard).await.len(), 1);
    // Closing under another token or holder leaves it; the claimer's close
    // removes it, in the same call as its run record.
    c.close_fires(&[close(shard, "alo", 1000, "n1/a", t + 1)])
        .await
        .expect("close");
    c.close_fires(&[close(shard, "alo", 1000, "n2/b", t)])
        .await
        .expect("close");
    assert_eq!(open(&c, shard).await.len(), 1);
    c.record_and_close(&[], &[close(shard, "alo", 1000, "n1/a", t)])
        .await
        .expect("close");
    assert!(open(&c, shard).await.is_empty());
}

async fn a_fire_is_recovered_once_under_a_lease_and_its_old_holder_cannot_close_it(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("alo"), None).await.expect("put").version;
    let shard = shard_of("alo", RING.shard_count);
    let t1 = acquire(&c, shard, "n1/a").await;
    let lost = first_attempt("alo", 1000, v, FireKind::Scheduled).tracked();
    let lost_attempt = lost.attempt;
    assert_eq!(
        claim(&c, shard, "n1/a", t1, vec![lost]).await,
        vec![ClaimOutcome::Claimed]
    );
    let seen = open(&c, shard).await;
    // Without the lease nothing is recovered.
    assert_eq!(
        recover(&c, shard, "n2/b", 99, seen.clone()).await,
        RecoverOutcome::LeaseLost
    );
    // The old holder's lease ends; the next owner recovers the fire once.
    assert_eq!(
        c.release_leases(&[(shard, t1)], "n1/a")
            .await
            .expect("release"),
        vec![true]
    );
    let t2 = acquire(&c, shard, "n2/b").await;
    assert_eq!(
        recover(&c, shard, "n2/b", t2, seen.clone()).await,
        RecoverOutcome::Recovered(vec![true])
    );
    let now_open = open(&c, shard).await;
    assert_eq!(now_open.len(), 1);
    assert_eq!(
        (
            now_open[0].holder.as_str(),
            now_open[0].token,
            now_open[0].delivery
        ),
        ("n2/b", t2, 2)
    );
    // The same entry as read before cannot be recovered again, by anyone.
    assert_eq!(
        recover(&c, shard, "n2/b", t2, seen).await,
        RecoverOutcome::Recovered(vec![false])
    );
    // The old holder can neither close it nor take its lost claim over.
    c.close_fires(&[close(shard, "alo", 1000, "n1/a", t1)])
        .await
        .expect("close");
    assert_eq!(open(&c, shard).await, now_open);
    assert_eq!(
        c.release_leases(&[(shard, t2)], "n2/b")
            .await
            .expect("release"),
        vec![true]
    );
    let t3 = acquire(&c, shard, "n1/a").await;
    let retry = FireClaim {
        uncertain: vec![lost_attempt],
        ..first_attempt("alo", 1000, v, FireKind::Scheduled).tracked()
    };
    assert_eq!(
        claim(&c, shard, "n1/a", t3, vec![retry]).await,
        vec![ClaimOutcome::AlreadyClaimed],
        "a recovered fire's old claim cannot be taken over"
    );
    // Recovered again by a third owner (the second is gone too): delivery 3.
    assert_eq!(
        recover(&c, shard, "n1/a", t3, now_open.clone()).await,
        RecoverOutcome::Recovered(vec![true])
    );
    let third = open(&c, shard).await;
    assert_eq!((third[0].token, third[0].delivery), (t3, 3));
    // Its holder's close ends it.
    c.close_fires(&[close_delivery(shard, "alo", 1000, "n1/a", t3, 3)])
        .await
        .expect("close");
    assert!(open(&c, shard).await.is_empty());
}

async fn triggers_are_tracked_with_their_kind(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("alo"), None).await.expect("put").version;
    let shard = shard_of("alo", RING.shard_count);
    let at = c
        .trigger_job("alo")
        .await
        .expect("trigger")
        .expect("queued");
    let t = acquire(&c, shard, "n1/a").await;
    assert_eq!(
        claim(
            &c,
            shard,
            "n1/a",
            t,
            vec![first_attempt("alo", at, v, FireKind::Trigger).tracked()]
        )
        .await,
        vec![ClaimOutcome::Claimed]
    );
    let entries = open(&c, shard).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].kind, entries[0].scheduled_ms),
        (FireKind::Trigger, at)
    );
    // Other shards have no open entries.
    let other = (shard + 1) % RING.shard_count;
    assert_eq!(
        c.open_fires(&[other, shard]).await.expect("open")[0],
        Vec::new()
    );
}

async fn an_abandoned_fire_is_kept_for_the_lease_holder_and_recovered_once(env: Env) {
    let c = env.coord().await;
    let (shard, t1) = one_tracked_claim(&c, FireKind::Trigger).await;
    // Only the holder under its own token can abandon it; abandoning twice
    // changes nothing more.
    c.close_fires(&[abandon(shard, "alo", 1000, "n2/b", t1)])
        .await
        .expect("abandon");
    assert!(!open(&c, shard).await[0].abandoned);
    c.close_fires(&[abandon(shard, "alo", 1000, "n1/a", t1)])
        .await
        .expect("abandon");
    c.close_fires(&[abandon(shard, "alo", 1000, "n1/a", t1)])
        .await
        .expect("abandon");
    let seen = open(&c, shard).await;
    assert_eq!(seen.len(), 1, "an abandoned fire stays open");
    assert!(seen[0].abandoned);
    assert_eq!(
        (seen[0].kind, seen[0].holder.as_str(), seen[0].delivery),
        (FireKind::Trigger, "n1/a", 1)
    );
    // The next lease holder recovers it: no longer abandoned, one more
    // delivery, kind kept; the same read cannot recover it twice.
    c.release_leases(&[(shard, t1)], "n1/a")
        .await
        .expect("release");
    let t2 = acquire(&c, shard, "n2/b").await;
    assert_eq!(
        recover(&c, shard, "n2/b", t2, seen.clone()).await,
        RecoverOutcome::Recovered(vec![true])
    );
    assert_eq!(
        recover(&c, shard, "n2/b", t2, seen).await,
        RecoverOutcome::Recovered(vec![false])
    );
    let now = open(&c, shard).await;
    assert_eq!(
        (
            now[0].holder.as_str(),
            now[0].token,
            now[0].delivery,
            now[0].abandoned,
            now[0].kind
        ),
        ("n2/b", t2, 2, false, FireKind::Trigger)
    );
    // The old holder's close of its abandoned delivery removes nothing.
    c.close_fires(&[close(shard, "alo", 1000, "n1/a", t1)])
        .await
        .expect("close");
    assert_eq!(open(&c, shard).await, now);
}

async fn a_stale_close_of_an_earlier_delivery_spares_a_later_one_of_the_same_holder(env: Env) {
    // A holder abandons a fire and recovers it itself under the same token
    // (its lease lapsed locally and was granted again); a retry of the
    // abandon (its reply was lost after it applied) or a late close of the
    // first delivery must not touch the second.
    let c = env.coord().await;
    let (shard, t) = one_tracked_claim(&c, FireKind::Scheduled).await;
    c.close_fires(&[abandon(shard, "alo", 1000, "n1/a", t)])
        .await
        .expect("abandon");
    let seen = open(&c, shard).await;
    assert_eq!(
        recover(&c, shard, "n1/a", t, seen).await,
        RecoverOutcome::Recovered(vec![true])
    );
    let second = open(&c, shard).await;
    assert_eq!((second[0].delivery, second[0].abandoned), (2, false));
    c.close_fires(&[abandon(shard, "alo", 1000, "n1/a", t)])
        .await
        .expect("stale abandon");
    c.close_fires(&[close(shard, "alo", 1000, "n1/a", t)])
        .await
        .expect("stale close");
    assert_eq!(
        open(&c, shard).await,
        second,
        "the second delivery stays open"
    );
    c.close_fires(&[close_delivery(shard, "alo", 1000, "n1/a", t, 2)])
        .await
        .expect("close");
    assert!(open(&c, shard).await.is_empty());
}

async fn hand_back(c: &Arc<dyn Coordinator>, holder: &str, fires: &[HandBack]) -> Vec<bool> {
    c.hand_back_fires(holder, fires, RETENTION)
        .await
        .expect("hand back")
}

async fn version(c: &Arc<dyn Coordinator>, shard: u32) -> u64 {
    c.shard_versions(&[shard]).await.expect("versions")[0]
}

async fn a_lost_claim_is_handed_back_once_for_the_lease_holder_to_recover(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("amo"), None).await.expect("put").version;
    let shard = shard_of("amo", RING.shard_count);
    let t1 = acquire(&c, shard, "n1/a").await;
    let landed = first_attempt("amo", 1000, v, FireKind::Scheduled);
    let attempt = landed.attempt;
    assert_eq!(
        claim(&c, shard, "n1/a", t1, vec![landed]).await,
        vec![ClaimOutcome::Claimed]
    );
    let back = |at: i64, lost: Vec<u64>| HandBack {
        shard,
        job_id: "amo".into(),
        scheduled_ms: at,
        kind: FireKind::Scheduled,
        token: t1,
        lost_attempts: lost,
    };
    let before = version(&c, shard).await;
    // An attempt that never landed, a fire nobody claimed, and another
    // holder's hand-back of this claim: nothing is written.
    assert_eq!(
        hand_back(
            &c,
            "n1/a",
            &[back(1000, vec![attempt + 1000]), back(2000, vec![attempt])]
        )
        .await,
        vec![false, false]
    );
    assert_eq!(
        hand_back(&c, "n2/b", &[back(1000, vec![attempt])]).await,
        vec![false]
    );
    assert!(open(&c, shard).await.is_empty());
    assert_eq!(version(&c, shard).await, before, "nothing moved");
    // The landed attempt: an abandoned entry of delivery 0 names the fire,
    // the shard's version moves; a retry of the hand-back says the same and
    // writes nothing more.
    assert_eq!(
        hand_back(&c, "n1/a", &[back(1000, vec![attempt])]).await,
        vec![true]
    );
    let seen = open(&c, shard).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (
            seen[0].holder.as_str(),
            seen[0].delivery,
            seen[0].abandoned,
            seen[0].kind
        ),
        ("n1/a", 0, true, FireKind::Scheduled)
    );
    let moved = version(&c, shard).await;
    assert!(moved > before, "the holder is told");
    assert_eq!(
        hand_back(&c, "n1/a", &[back(1000, vec![attempt])]).await,
        vec![true]
    );
    assert_eq!(open(&c, shard).await, seen);
    assert_eq!(version(&c, shard).await, moved);
    // No attempt can claim the fire any more, not even a takeover of the
    // handed-back attempt: only the recovery of the lease holder runs it.
    let retry = FireClaim {
        uncertain: vec![attempt],
        ..first_attempt("amo", 1000, v, FireKind::Scheduled)
    };
    assert_eq!(
        claim(
            &c,
            shard,
            "n1/a",
            t1,
            vec![retry, first_attempt("amo", 1000, v, FireKind::Trigger)]
        )
        .await,
        vec![ClaimOutcome::AlreadyClaimed, ClaimOutcome::AlreadyClaimed]
    );
    c.release_leases(&[(shard, t1)], "n1/a")
        .await
        .expect("release");
    let t2 = acquire(&c, shard, "n2/b").await;
    assert_eq!(
        recover(&c, shard, "n2/b", t2, seen).await,
        RecoverOutcome::Recovered(vec![true])
    );
    let now = open(&c, shard).await;
    assert_eq!(
        (
            now[0].holder.as_str(),
            now[0].token,
            now[0].delivery,
            now[0].abandoned
        ),
        ("n2/b", t2, 1, false)
    );
    // Once recovered, the old holder's hand-back finds another's claim.
    assert_eq!(
        hand_back(&c, "n1/a", &[back(1000, vec![attempt])]).await,
        vec![false]
    );
    assert_eq!(open(&c, shard).await, now);
}

async fn a_tracked_lost_claim_is_handed_back_by_abandoning_its_own_entry(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("alo"), None).await.expect("put").version;
    let shard = shard_of("alo", RING.shard_count);
    let t = acquire(&c, shard, "n1/a").await;
    let landed = first_attempt("alo", 1000, v, FireKind::Trigger).tracked();
    let attempt = landed.attempt;
    claim(&c, shard, "n1/a", t, vec![landed]).await;
    let fire = HandBack {
        shard,
        job_id: "alo".into(),
        scheduled_ms: 1000,
        kind: FireKind::Trigger,
        token: t,
        lost_attempts: vec![attempt],
    };
    assert_eq!(hand_back(&c, "n1/a", &[fire]).await, vec![true]);
    let seen = open(&c, shard).await;
    assert_eq!(
        (
            seen[0].holder.as_str(),
            seen[0].delivery,
            seen[0].abandoned,
            seen[0].kind
        ),
        ("n1/a", 1, true, FireKind::Trigger),
        "the claim's own entry, abandoned"
    );
}

conformance!(
    a_lost_claim_is_handed_back_once_for_the_lease_holder_to_recover,
    a_tracked_lost_claim_is_handed_back_by_abandoning_its_own_entry,
    a_stale_close_of_an_earlier_delivery_spares_a_later_one_of_the_same_holder,
    an_abandoned_fire_is_kept_for_the_lease_holder_and_recovered_once,
    a_tracked_claim_stays_open_until_its_holder_closes_it,
    a_fire_is_recovered_once_under_a_lease_and_its_old_holder_cannot_close_it,
    triggers_are_tracked_with_their_kind,
);
