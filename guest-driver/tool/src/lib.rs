//! What the guest tool and the host harness must agree on: the test pattern
//! written through the device and the hash the DMA trace records for it.
//! The guest driver's KUnit suites generate the same pattern (its formula is
//! documented in `pattern::bytes`), so the host can recompute the hash of any
//! slice of any transfer a guest reports.

pub mod pattern;
