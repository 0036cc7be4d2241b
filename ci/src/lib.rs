//! The boot-and-transfer harness: runs guests in dmalab and reads what they
//! report (console KTAP, init lines) next to what the device recorded (the
//! DMA trace).

#![forbid(unsafe_code)]

pub mod browser;
pub mod build;
pub mod crosscheck;
pub mod guest;
pub mod ktap;
pub mod tiny_guest;
pub mod vfio_user;

pub use build::workspace_root;
