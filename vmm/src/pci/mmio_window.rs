//! The PCI MMIO window: one fixed range on the MMIO bus inside which the
//! BARs that decode are found by address.
//!
//! The map changes only through [`PciMmioWindow::move_bar`], called by the
//! root with the [`BarReprogrammingParams`] a configuration write returned;
//! an MMIO access (the hot path) scans the short map and calls the device,
//! which takes its own lock. So an access takes the window's bus-entry lock
//! and whatever the device takes, nothing else (see vmm/README.md).

use std::sync::Arc;

use pci::{BarReprogrammingParams, PciDevice};

use crate::bus::BusDevice;

/// One decoding BAR.
#[derive(Clone)]
struct BarMapping {
    start: u64,
    /// Last address (inclusive).
    last: u64,
    slot: u8,
    bar: u8,
    dev: Arc<dyn PciDevice>,
}

/// The window, inserted on the MMIO bus at [`PciMmioWindow::base`].
pub struct PciMmioWindow {
    base: u64,
    map: Vec<BarMapping>,
}

impl PciMmioWindow {
    /// An empty window whose bus offsets count from `base`.
    pub fn new(base: u64) -> Self {
        PciMmioWindow {
            base,
            map: Vec::new(),
        }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// Applies one BAR move of `dev` in `slot`: the BAR stops decoding at
    /// its old base and starts at its new one (either may be absent). I/O
    /// BARs have no place here and are ignored.
    pub fn move_bar(&mut self, slot: u8, dev: &Arc<dyn PciDevice>, moved: &BarReprogrammingParams) {
        if !moved.kind.is_memory() {
            return;
        }
        self.map.retain(|m| !(m.slot == slot && m.bar == moved.bar));
        let Some(start) = moved.new_base else { return };
        let Some(last) = moved.size.checked_sub(1).and_then(|s| start.checked_add(s)) else {
            return;
        };
        self.map.push(BarMapping {
            start,
            last,
            slot,
            bar: moved.bar,
            dev: Arc::clone(dev),
        });
    }

    /// How many BARs decode (for tests and logs).
    pub fn mapped_bars(&self) -> usize {
        self.map.len()
    }

    /// The mapping and BAR offset decoding an access of `len` bytes at
    /// window offset `offset`; an access that straddles a BAR's end is
    /// refused, not split.
    #[inline]
    fn lookup(&self, offset: u64, len: usize) -> Option<(&BarMapping, u64)> {
        let addr = self.base.checked_add(offset)?;
        let end = addr.checked_add(u64::try_from(len.checked_sub(1)?).ok()?)?;
        let m = self.map.iter().find(|m| m.start <= addr && end <= m.last)?;
        Some((m, addr - m.start))
    }
}

impl BusDevice for PciMmioWindow {
    #[inline]
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match self.lookup(offset, data.len()) {
            Some((m, off)) => m.dev.read_bar(m.bar, off, data),
            // Nothing decodes here: master abort, all ones.
            None => data.fill(0xff),
        }
    }

    #[inline]
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((m, off)) = self.lookup(offset, data.len()) {
            m.dev.write_bar(m.bar, off, data);
        }
    }
}
