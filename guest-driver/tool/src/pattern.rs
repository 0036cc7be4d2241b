//! Test patterns: position- and seed-dependent bytes, so a transfer that
//! lands at the wrong offset or from the wrong buffer is told apart from a
//! right one. The formula is the driver's (`guest-driver/src/pattern.rs`,
//! compiled here as is), so the host can recompute what the KUnit suites and
//! this tool wrote.

#[path = "../../src/pattern.rs"]
mod formula;

pub use formula::byte;

/// `len` bytes of the pattern for `seed` (see [`byte`]; never all equal).
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| byte(seed, i)).collect()
}

/// The first index at which two buffers differ (or the shorter one ends).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Some(i);
    }
    (a.len() != b.len()).then(|| a.len().min(b.len()))
}

/// The hash dmalab's DMA trace records for the bytes a transfer moved
/// (XXH3-64, seed 0), so the host can match this tool's lines to trace records.
pub fn trace_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_depend_on_seed_and_position() {
        assert_ne!(bytes(256, 0), bytes(256, 1));
        let p = bytes(4096, 7);
        assert_ne!(p[0..256], p[256..512], "pages of one pattern must differ");
        assert_eq!(p, bytes(4096, 7));
    }

    #[test]
    fn pattern_follows_its_documented_formula() {
        // The formula of `byte`'s doc comment, computed the long way.
        for seed in [0u8, 1, 0x5a, 0xff] {
            for i in [0usize, 1, 255, 256, 257, 4095, 65535, 65536, 1 << 20] {
                let want = (((i % 256) * 31 + usize::from(seed) + (i / 256) % 256) % 256) ^ 0xa5;
                assert_eq!(usize::from(byte(seed, i)), want, "seed {seed} i {i}");
            }
        }
        // Fixed values: a change of the formula breaks every recorded trace.
        assert_eq!(bytes(4, 0), [0xa5, 0xba, 0x9b, 0xf8]);
    }

    #[test]
    fn difference_is_found() {
        let a = bytes(100, 3);
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b[42] ^= 1;
        assert_eq!(first_difference(&a, &b), Some(42));
        assert_eq!(first_difference(&a, &a[..50]), Some(50));
    }

    #[test]
    fn trace_hash_is_xxh3_64() {
        // Reference value of XXH3-64 (seed 0) of the empty input.
        assert_eq!(trace_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_ne!(trace_hash(&bytes(64, 0)), trace_hash(&bytes(64, 1)));
    }
}
