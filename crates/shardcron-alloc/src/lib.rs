//! The memory allocator of the `shardcron` daemon and of `shardcron-bench`,
//! and how it is tuned for a scheduler's load.
//!
//! **Why mimalloc.** A burst of fires allocates on every runtime thread at
//! once; glibc's malloc spent a sixth of a worker's CPU there (profile of
//! `shardcron-bench live --jobs 10000`), mimalloc a fraction of it. The
//! `shardcron` library leaves the choice to the program that embeds it:
//! only the two binaries link this crate.
//!
//! **Why freed memory is kept for two minutes.** A node allocates in
//! bursts, at the instants where many fires are due: every second for
//! `@every 1s` jobs, at the top of every minute for `0 * * * * *`. By
//! default mimalloc gives memory that stayed free for a second back to the
//! operating system, so every burst found its memory returned by the time
//! the next one came: each fresh page cost a page fault, and the purge
//! itself (`madvise`, TLB flushes) ran inside the burst. Keeping freed
//! memory for [`PURGE_DELAY_MS`], longer than a minute's burst period,
//! cut the workers' CPU per 1,000 fires by 15 % at 20,000 fires/s
//! (docs/BENCHMARKS.md §4q), while the memory of a one-off spike (a
//! catch-up after an outage) still goes back to the system.

use std::os::raw::c_long;

use libmimalloc_sys::mi_option_t;
use mimalloc::MiMalloc;

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

/// How long memory freed stays with the process before it is returned to
/// the operating system, ms: longer than the period of a minute's bursts.
pub const PURGE_DELAY_MS: c_long = 120_000;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e`, which
/// `libmimalloc-sys` does not name. The test below checks that the option
/// of this number has the purge delay's documented default, so an upgrade
/// that renumbers the options fails here instead of tuning something else.
const PURGE_DELAY_OPTION: mi_option_t = 15;

/// Keeps memory freed after a burst of fires for [`PURGE_DELAY_MS`] before
/// it is returned to the operating system. Call it first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an option's value; the purge delay
    // accepts any number of milliseconds (-1 never purges, 0 at once).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS) }
}

/// The purge delay in force, ms.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: `mi_option_get` reads an option's value.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // mimalloc v3 documents a default purge delay of 1,000 ms; no other
        // option has that default.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000, "option 15 is not the purge delay");
        }
        keep_freed_memory();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
