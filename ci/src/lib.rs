//! The boot-and-transfer harness: runs guests in dmalab and reads what they
//! report (console KTAP, init lines) next to what the device recorded (the
//! DMA trace).

pub mod ktap;
