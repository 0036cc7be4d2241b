// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/dmalab/dma24-N/`: `info`, `counters`, `last_error`,
//! `allocators` and `zerocopy`, one `key value` pair per line (`allocators`: one
//! allocator per line, `*` marking the one read()/write() use), and
//! `size_classes`, the allocator lab's measured table (one row per
//! allocator and size, see `lab_sizes`).

use crate::{
    alloc_lab::Allocator,
    regs::err_name,
    state::{get, Dma24},
};
use core::fmt::{self, Formatter};
use kernel::{debugfs::ScopedDir, sync::Arc};

/// Creates the files of one device's directory.
pub(crate) fn populate<'data, 'dir>(dev: &'data Arc<Dma24>, dir: &'dir ScopedDir<'data, 'dir>) {
    dir.read_callback_file(c"info", dev, &info);
    dir.read_callback_file(c"counters", dev, &counters);
    dir.read_callback_file(c"last_error", dev, &last_error);
    dir.read_callback_file(c"allocators", dev, &allocators);
    dir.read_callback_file(c"zerocopy", dev, &zerocopy);
    dir.read_callback_file(c"timing", dev, &timing);
    dir.read_callback_file(c"size_classes", dev, &size_classes);
}

fn zerocopy(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    for (key, value) in crate::zerocopy::counter_lines(dev) {
        writeln!(f, "{key} {value}")?;
    }
    Ok(())
}

/// Measured on every read: each allocator x each size of the lab's table.
fn timing(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    for (key, value) in dev.timing.lines() {
        writeln!(f, "{key} {value}")?;
    }
    Ok(())
}

fn size_classes(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    match dev.with_live(|live| Ok(crate::lab_sizes::write_table(live, f))) {
        Ok(r) => r,
        Err(e) => writeln!(f, "device unusable: {:?}", e),
    }
}

fn info(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    let i = &dev.info;
    writeln!(f, "name {}", dev.name.to_str().unwrap_or("?"))?;
    writeln!(f, "pci {}", dev.pdev.as_ref().name().to_str().unwrap_or("?"))?;
    writeln!(f, "version {}.{}", i.version >> 16, i.version & 0xffff)?;
    writeln!(f, "mask_bits {}", i.mask_bits)?;
    writeln!(f, "dma_mask {:#x}", i.dma_mask)?;
    writeln!(f, "caps {:#x}", i.caps)?;
    writeln!(f, "overflow {}", if i.truncates() { "truncate" } else { "reject" })?;
    writeln!(f, "devmem_size {}", i.devmem_size)?;
    writeln!(f, "irq_mode {:?}", i.irq_mode)?;
    writeln!(f, "bound {}", u32::from(dev.is_alive()))
}

fn counters(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    let s = &dev.stats;
    writeln!(f, "starts {}", get(&s.starts))?;
    writeln!(f, "transfers_ok {}", get(&s.transfers_ok))?;
    writeln!(f, "transfers_failed {}", get(&s.transfers_failed))?;
    writeln!(f, "bytes_to_device {}", get(&s.bytes_to_device))?;
    writeln!(f, "bytes_from_device {}", get(&s.bytes_from_device))?;
    writeln!(f, "map_errors {}", get(&s.map_errors))?;
    writeln!(f, "device_errors {}", get(&s.device_errors))?;
    writeln!(f, "timeouts {}", get(&s.timeouts))?;
    writeln!(f, "irqs {}", get(&s.irqs))?;
    writeln!(f, "spurious_irqs {}", get(&s.spurious_irqs))?;
    writeln!(f, "lost_irqs {}", get(&s.lost_irqs))?;
    if let Some(d) = dev.device_counters() {
        writeln!(f, "dev_transfers {}", d.transfers)?;
        writeln!(f, "dev_bytes_to_device {}", d.bytes_to_device)?;
        writeln!(f, "dev_bytes_from_device {}", d.bytes_from_device)?;
        writeln!(f, "dev_faults {}", d.faults)?;
        writeln!(f, "dev_last_seq {}", d.last_seq)?;
        writeln!(f, "dev_fault_addr {:#x}", d.fault_addr)?;
    }
    Ok(())
}

fn last_error(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    let e = dev.last_error();
    writeln!(f, "count {}", e.count)?;
    if e.count == 0 {
        return Ok(());
    }
    writeln!(f, "errno {}", e.errno)?;
    writeln!(f, "source {}", e.source.name())?;
    writeln!(f, "dev_error {} {}", e.dev_error, err_name(e.dev_error))?;
    let alloc = Allocator::from_u32(e.alloc).map_or("?", Allocator::name);
    writeln!(f, "allocator {}", alloc)?;
    writeln!(f, "direction {}", if e.from_device { "from_device" } else { "to_device" })?;
    writeln!(f, "bus_addr {:#x}", e.bus_addr)?;
    writeln!(f, "fault_addr {:#x}", e.fault_addr)?;
    writeln!(f, "dev_offset {:#x}", e.dev_offset)?;
    writeln!(f, "len {}", e.len)?;
    writeln!(f, "seq {}", e.seq)
}

fn allocators(dev: &Arc<Dma24>, f: &mut Formatter<'_>) -> fmt::Result {
    let current = dev.allocator();
    for a in Allocator::ALL {
        writeln!(
            f,
            "{} {} {} {}{}{}",
            if a == current { '*' } else { ' ' },
            a as u32,
            a.name(),
            a.call(),
            if a.zone_dma() { " [ZONE_DMA]" } else { "" },
            if a.is_sg() { " [SG]" } else { "" }
        )?;
    }
    Ok(())
}
