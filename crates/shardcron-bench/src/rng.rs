//! A tiny seeded pseudo-random generator (SplitMix64) for simulated workloads.
//!
//! Why not the `rand` crate: a `sim` run must be reproducible from the seed
//! printed in `docs/BENCHMARKS.md` on any platform and with any later build
//! of the tool. SplitMix64 is a fixed, ten-line algorithm (Steele, Lea and
//! Flood, "Fast splittable pseudorandom number generators", 2014), so its
//! stream can never change under us; `rand` does not promise that for its
//! standard generators across releases. Statistical quality is ample for
//! picking schedules, costs and jobs to delete.

/// SplitMix64 state.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw from `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform draw from `0..bound` (0 when `bound` is 0), by the
    /// multiply-shift reduction; its bias (below `bound / 2^64`) is
    /// irrelevant at the sizes simulated.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_stream() {
        // First outputs of SplitMix64 seeded with 0 (the reference C code).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        assert_eq!(rng.below(0), 0);
    }
}
