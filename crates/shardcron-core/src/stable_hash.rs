//! The one stable hash of the project.
//!
//! Every node in a shardcron fleet must compute the same `job -> shard` and
//! `shard -> owner` maps without talking to anyone. That only works if the hash
//! behind those maps is identical in every process, on every platform, in every
//! build and in every future version. Rust's `DefaultHasher` (SipHash with
//! per-process random keys in `HashMap`, and an explicitly unspecified algorithm
//! otherwise) gives none of those guarantees, and neither does the way std's
//! `Hash` impls feed a hasher (`str` appends a `0xff` terminator, slices prefix
//! their length as a platform-sized `usize`, integers are written in native
//! endianness, and all of it may change between Rust releases).
//!
//! So this module pins everything down:
//!
//! * [`stable_hash64`] is XXH3-64 with seed 0 over an explicit byte string. XXH3
//!   has a frozen, documented output, is endian-independent, and is fast.
//! * [`StableHashBuilder`] builds a [`std::hash::Hasher`] that streams bytes into
//!   the same XXH3 (seed 0), so code that must go through `Hash`/`BuildHasher`
//!   (the `hashring` crate) gets the same numbers as [`stable_hash64`].
//! * [`ExplicitBytes`] is the only thing we ever hand to that hasher: its `Hash`
//!   impl performs exactly one `write` of its bytes — no length prefix, no
//!   terminator, no `usize` — so `StableHashBuilder.hash_one(&ExplicitBytes(b))
//!   == stable_hash64(&b)` holds by construction.
//!
//! Changing anything here reshuffles every shard in every deployment; the
//! golden tests in `shard.rs` and `tests/ring_props.rs` exist to catch that.

use std::hash::{BuildHasher, Hash, Hasher};

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// Hashes `bytes` with XXH3-64, seed 0.
///
/// This is the stable hash used for shard assignment and the ring. Its output
/// for a given input never changes across processes, platforms or versions.
pub fn stable_hash64(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// A [`BuildHasher`] producing [`StableHasher`]s (streaming XXH3-64, seed 0).
///
/// Use it only with values whose `Hash` impl writes explicit bytes, i.e.
/// [`ExplicitBytes`]; then `hash_one` equals [`stable_hash64`] of those bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StableHashBuilder;

impl BuildHasher for StableHashBuilder {
    type Hasher = StableHasher;

    fn build_hasher(&self) -> StableHasher {
        StableHasher::new()
    }
}

/// A [`Hasher`] that streams every written byte into XXH3-64 (seed 0).
///
/// Concatenation-invariant: writing `a` then `b` equals writing `a ++ b`.
/// The fixed-width integer methods are overridden to write little-endian bytes
/// (and `usize`/`isize` as 64-bit), so even accidental use of them is
/// platform-independent — but prefer [`ExplicitBytes`].
#[derive(Clone)]
pub struct StableHasher {
    state: Xxh3Default,
}

impl StableHasher {
    /// Creates a hasher with an empty input (XXH3-64, seed 0).
    pub fn new() -> Self {
        Self {
            state: Xxh3Default::new(),
        }
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StableHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableHasher").finish_non_exhaustive()
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.state.digest()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }

    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }

    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }

    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_i8(&mut self, i: i8) {
        self.write(&i.to_le_bytes());
    }

    fn write_i16(&mut self, i: i16) {
        self.write(&i.to_le_bytes());
    }

    fn write_i32(&mut self, i: i32) {
        self.write(&i.to_le_bytes());
    }

    fn write_i64(&mut self, i: i64) {
        self.write(&i.to_le_bytes());
    }

    fn write_i128(&mut self, i: i128) {
        self.write(&i.to_le_bytes());
    }

    fn write_isize(&mut self, i: isize) {
        self.write_i64(i as i64);
    }
}

/// An explicit byte string to hash through [`StableHashBuilder`].
///
/// Its `Hash` impl performs exactly one `state.write(&self.0)`: no length
/// prefix, no terminator, nothing that depends on std's `Hash` internals.
/// Build the bytes yourself (e.g. `id ++ b"#" ++ index.to_be_bytes()`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ExplicitBytes(pub Vec<u8>);

impl Hash for ExplicitBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_matches_one_shot_hash() {
        for input in [&b""[..], b"a", b"node-a#\x00\x00\x00\x01", &[7u8; 1000]] {
            let via_builder = StableHashBuilder.hash_one(ExplicitBytes(input.to_vec()));
            assert_eq!(via_builder, stable_hash64(input));
        }
    }

    #[test]
    fn streaming_is_concatenation_invariant() {
        let mut h = StableHashBuilder.build_hasher();
        h.write(b"shard:");
        h.write(&7u32.to_be_bytes());
        assert_eq!(h.finish(), stable_hash64(b"shard:\x00\x00\x00\x07"));
    }

    #[test]
    fn pinned_values() {
        // XXH3-64 seed 0 reference values; if these change, every shard moves.
        assert_eq!(stable_hash64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(stable_hash64(b"a"), 0xE6C6_32B6_1E96_4E1F);
    }

    #[test]
    fn integer_writes_are_little_endian() {
        let mut h = StableHasher::new();
        h.write_usize(1);
        assert_eq!(h.finish(), stable_hash64(&1u64.to_le_bytes()));
    }
}
