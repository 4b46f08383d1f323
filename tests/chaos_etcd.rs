//! The chaos scenarios of tests/chaos.rs that do not depend on the store,
//! run by the same code on a private etcd: real worker processes, every
//! fire audited from the exec job's own append-only log, misses split by
//! the claim records in the shards' state documents. Each scenario prints
//! one markdown row.

mod common;
mod scenarios;

use common::StoreKind;

/// Every worker of three stopped with SIGTERM and restarted in turn.
#[test]
fn rolling_restart_of_every_worker_on_etcd() {
    scenarios::rolling_restart_of_every_worker(StoreKind::Etcd);
}

/// One worker SIGKILLed, then restarted.
#[test]
fn kill_dash_nine_and_restart_on_etcd() {
    scenarios::kill_dash_nine_and_restart(StoreKind::Etcd);
}

/// One worker paused past its lease TTL, then resumed.
#[test]
fn sigstop_past_the_lease_ttl_then_sigcont_on_etcd() {
    scenarios::sigstop_past_the_lease_ttl_then_sigcont(StoreKind::Etcd);
}

/// Three workers joining a fleet of three, then leaving.
#[test]
fn scale_out_three_to_six_and_back_on_etcd() {
    scenarios::scale_out_three_to_six_and_back(StoreKind::Etcd);
}
