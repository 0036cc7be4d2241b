//! Test patterns: position- and seed-dependent bytes, so a transfer that
//! lands at the wrong offset or from the wrong buffer is told apart from a
//! right one.

/// `len` bytes that differ with position and seed (never all equal).
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add((i >> 8) as u8)
                ^ 0xa5
        })
        .collect()
}

/// The first index at which two buffers differ (or the shorter one ends).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Some(i);
    }
    (a.len() != b.len()).then(|| a.len().min(b.len()))
}

/// 64-bit FNV-1a of the bytes (printed so a person can match lines by eye).
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    fn difference_is_found() {
        let a = bytes(100, 3);
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b[42] ^= 1;
        assert_eq!(first_difference(&a, &b), Some(42));
        assert_eq!(first_difference(&a, &a[..50]), Some(50));
    }

    #[test]
    fn fnv1a_known_value() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
