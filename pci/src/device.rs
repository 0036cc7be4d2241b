//! The contract between a PCI function and whatever hosts it (dmalab's PCI
//! root, a test, later a vfio-user server).

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

impl BarKind {
    /// True for the two memory kinds.
    pub fn is_memory(self) -> bool {
        self != BarKind::Io
    }
}

/// The current decode state of one BAR, as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR number (0..=5; the low slot of a 64-bit BAR).
    pub index: u8,
    pub kind: BarKind,
    /// Base address the guest wrote (guest-physical, or port for `Io`).
    pub address: u64,
    /// Size in bytes, a power of two.
    pub size: u64,
    /// True when the Command register enables this kind of decode (MEMORY
    /// for memory BARs, IO for I/O BARs), the BAR is not being sized and it
    /// has been given a non-zero address.
    pub decoding: bool,
}

impl BarInfo {
    /// Where the BAR decodes now, if it does.
    pub fn decoded_base(&self) -> Option<u64> {
        self.decoding.then_some(self.address)
    }
}

/// A change in where a BAR decodes, caused by one configuration write: the
/// guest moved it, sized it (decoding stops), or turned decoding on or off
/// in the Command register. Reported by [`PciDevice::write_config`] so the
/// host updates its address map for this one BAR instead of rescanning every
/// device after every configuration write (after Cloud Hypervisor's
/// `BarReprogrammingParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarReprogrammingParams {
    pub bar: u8,
    pub kind: BarKind,
    pub size: u64,
    /// Where the BAR decoded before the write (`None`: it did not).
    pub old_base: Option<u64>,
    /// Where it decodes after the write (`None`: it does not).
    pub new_base: Option<u64>,
}

/// How a device raises interrupts in its host. Implemented by the VMM
/// (irqfd, KVM_SIGNAL_MSI) and by test doubles.
pub trait InterruptSink: Send + Sync {
    /// Drive the device's INTx pin (level-triggered: stays asserted until the
    /// device deasserts it).
    fn set_intx(&self, asserted: bool);
    /// Deliver one MSI message.
    fn signal_msi(&self, address: u64, data: u32);
}

/// A PCI function as the host's root complex sees it. Every argument comes
/// from the guest and is hostile: implementations never panic on any of
/// them.
///
/// The methods take `&self`: a device keeps its state behind its own lock(s),
/// so the host calls it without wrapping it in another mutex (one lock fewer
/// on the MMIO path, and the device decides what can run concurrently, e.g.
/// a DMA worker next to register reads).
pub trait PciDevice: Send + Sync {
    /// Read `data.len()` (1, 2 or 4) bytes of configuration space at byte
    /// `offset` (0..4096). Unimplemented space reads as zeros.
    fn read_config(&self, offset: u16, data: &mut [u8]);
    /// Write configuration space. BAR and Command changes take effect at
    /// once; each BAR whose decoded range changed is returned.
    fn write_config(&self, offset: u16, data: &[u8]) -> Vec<BarReprogrammingParams>;
    /// The BARs and whether each decodes now.
    fn bars(&self) -> Vec<BarInfo>;
    /// An access of `data.len()` (1, 2, 4 or 8) bytes at `offset` inside BAR `bar`.
    fn read_bar(&self, bar: u8, offset: u64, data: &mut [u8]);
    fn write_bar(&self, bar: u8, offset: u64, data: &[u8]);
    /// Current INTx level, for the host to re-assert the line after the
    /// guest's EOI (KVM irqfd resample). Devices without INTx say false.
    fn intx_asserted(&self) -> bool {
        false
    }
}
