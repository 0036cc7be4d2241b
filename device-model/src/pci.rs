//! The contract between a PCI device model and the VMM that hosts it.

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32,
    /// 64-bit memory BAR (occupies two BAR slots).
    Memory64,
    /// I/O port BAR.
    Io,
}

/// The current decode state of one BAR, as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR number (0..=5).
    pub index: u8,
    pub kind: BarKind,
    /// Base address the guest wrote (guest-physical, or port for `Io`).
    pub address: u64,
    /// Size in bytes, a power of two.
    pub size: u64,
    /// True when the Command register enables this kind of decode
    /// (MEM for memory BARs, IO for I/O BARs) and the BAR is not being sized.
    pub decoding: bool,
}

/// How a device model raises interrupts in its host. Implemented by the VMM
/// (irqfd, KVM_SIGNAL_MSI) and by test doubles.
pub trait InterruptSink: Send + Sync {
    /// Drive the device's INTx pin (level-triggered: stays asserted until the
    /// device deasserts it).
    fn set_intx(&self, asserted: bool);
    /// Deliver one MSI message.
    fn signal_msi(&self, address: u64, data: u32);
}

/// A PCI function as the VMM's host bridge sees it. Every argument comes from
/// the guest and is hostile: implementations never panic on any of them.
pub trait PciDevice: Send {
    /// Read `data.len()` (1, 2 or 4) bytes of configuration space at byte
    /// `offset` (0..4096). Unimplemented space reads as zeros.
    fn read_config(&mut self, offset: u16, data: &mut [u8]);
    /// Write configuration space; BAR and Command changes take effect at once
    /// and are visible through [`PciDevice::bars`].
    fn write_config(&mut self, offset: u16, data: &[u8]);
    /// The BARs and whether each decodes now.
    fn bars(&self) -> Vec<BarInfo>;
    /// An access of `data.len()` (1, 2, 4 or 8) bytes at `offset` inside BAR `bar`.
    fn read_bar(&mut self, bar: u8, offset: u64, data: &mut [u8]);
    fn write_bar(&mut self, bar: u8, offset: u64, data: &[u8]);
    /// Current INTx level, for the host to re-assert the line after the guest's
    /// EOI (KVM irqfd resample).
    fn intx_asserted(&self) -> bool;
}
