// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 OR MIT

//! The test pattern, one source for every side that writes or checks it: the
//! kernel module (`dmalab.rs` pulls this file in with `#[path]`), the guest
//! tool (`tool/src/pattern.rs` does the same) and through the tool's library
//! the host harness, which recomputes the trace hash of every transfer a
//! guest reports (`ci/src/crosscheck.rs`).
//!
//! Position- and seed-dependent bytes, so a transfer that lands at the wrong
//! offset or from the wrong buffer is told apart from a right one.
//!
//! Dependency-free on purpose: `const fn`s on primitives only, no `use`, so
//! both the `no_std` kernel crate and the `std` tool compile it as is.

/// Byte `i` of the pattern for `seed`:
/// `((i mod 256) * 31 + seed + (i / 256 mod 256)) mod 256 XOR 0xa5`.
pub const fn byte(seed: u8, i: usize) -> u8 {
    // The low byte of `i` and of `i / 256` (the formula is mod 256 throughout).
    let low = i.to_le_bytes()[0];
    let high = (i >> 8).to_le_bytes()[0];
    low.wrapping_mul(31).wrapping_add(seed).wrapping_add(high) ^ 0xa5
}
