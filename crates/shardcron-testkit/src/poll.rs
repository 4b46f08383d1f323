//! Waiting for a state a test server reaches on its own (a cluster
//! agreeing on its slots, sentinels electing a master): one polling loop
//! for every kit that needs one, each naming its own error.

use std::thread;
use std::time::{Duration, Instant};

use crate::TestkitError;

/// How often a condition is asked again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Asks `ready` every 50 ms until it says yes, fails with its error, or
/// `timeout` passes; the timeout becomes `timed_out("timed out after …
/// waiting for <what>")`.
pub(crate) fn poll_until(
    what: &str,
    timeout: Duration,
    timed_out: impl FnOnce(String) -> TestkitError,
    mut ready: impl FnMut() -> Result<bool, TestkitError>,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(timed_out(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        thread::sleep(POLL_EVERY);
    }
}
