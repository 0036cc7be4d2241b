// SPDX-License-Identifier: GPL-2.0

//! Driving the DMA engine through [`Live`] (a bound device with its transfer
//! mutex held): programming a transfer, waiting for its interrupt (with a
//! timeout), turning device error codes into errnos with a `dev_err` line
//! that names the cause, and building scatter-gather descriptor lists.

use crate::{
    dma_raw::SingleMap,
    dma_sg::SgMap,
    regs::*,
    state::{bump, Bar0, Bar1, Dma24, ErrorSource, LastError, Registers, XferState},
    timing::now_ns,
};
use kernel::{
    bindings, device,
    dma::{Coherent, CoherentBox, DataDirection, DmaAddress},
    pci,
    prelude::*,
    transmute::{AsBytes, FromBytes},
};

/// Largest transfer the character device does in one go; also the size of
/// the `SLAB_CACHE_DMA` cache's objects.
pub(crate) const CHUNK: usize = 16 * 1024;

/// `EPROTO`, which `kernel::error::code` does not name: made from the C
/// constant (positive, like every `E*` in the C headers).
pub(crate) fn eproto() -> Error {
    Error::from_errno(-(bindings::EPROTO as i32))
}

/// `EOPNOTSUPP`, which `kernel::error::code` does not name (see [`eproto`]).
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(bindings::EOPNOTSUPP as i32))
}

/// Direction of a transfer, from the driver's point of view.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    /// Guest RAM -> device memory.
    ToDevice,
    /// Device memory -> guest RAM.
    FromDevice,
}

impl Dir {
    /// The DMA API direction of the buffer.
    pub(crate) fn dma(self) -> DataDirection {
        match self {
            Dir::ToDevice => DataDirection::ToDevice,
            Dir::FromDevice => DataDirection::FromDevice,
        }
    }

    /// The REG_DMA_CMD direction bit.
    pub(crate) fn cmd(self) -> u32 {
        match self {
            Dir::ToDevice => 0,
            Dir::FromDevice => CMD_FROM_DEVICE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dir::ToDevice => "to device",
            Dir::FromDevice => "from device",
        }
    }
}

/// The errno a device error code (REG_ERROR) becomes. See README.md.
pub(crate) fn errno_for(code: u32) -> Error {
    match code {
        ERR_MASK => EFAULT,
        ERR_RAM => ENXIO,
        ERR_BME_OFF => EPERM,
        ERR_BAD_LENGTH => EINVAL,
        ERR_BAD_OFFSET => ERANGE,
        ERR_BAD_DESCRIPTOR => eproto(),
        ERR_DESC_LIST_TOO_LONG => E2BIG,
        ERR_BUSY => EBUSY,
        ERR_BAD_COMMAND => eopnotsupp(),
        _ => EIO,
    }
}

/// One transfer as written to the registers, unchecked: the KUnit suites
/// use this to program deliberately wrong transfers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Program {
    /// REG_DMA_ADDR: buffer (single mode) or first descriptor (SG mode).
    pub(crate) addr: u64,
    /// REG_DEV_OFFSET.
    pub(crate) dev_offset: u32,
    /// REG_DMA_LEN (ignored by the device in SG mode).
    pub(crate) len: u32,
    /// REG_DMA_CMD.
    pub(crate) cmd: u32,
    /// How long to wait for the interrupt.
    pub(crate) timeout_ms: u32,
}

/// A scatter-gather descriptor as the device fetches it (little-endian).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Desc {
    addr: u64,
    len: u32,
    flags: u32,
}

// SAFETY: `Desc` is `#[repr(C)]` with fields u64, u32, u32: 16 bytes without padding, so it has
// no uninitialised bytes.
unsafe impl AsBytes for Desc {}
// SAFETY: Any 16 bytes are a valid `Desc` (all fields are integers).
unsafe impl FromBytes for Desc {}

const _: () = assert!(core::mem::size_of::<Desc>() as u64 == DESC_SIZE);

impl Desc {
    pub(crate) fn new(addr: u64, len: u32, flags: u32) -> Self {
        Self {
            addr: addr.to_le(),
            len: len.to_le(),
            flags: flags.to_le(),
        }
    }
}

/// A device known to be bound, with its transfer mutex held: what every
/// hardware access and DMA mapping goes through (see [`Dma24::with_live`]).
pub(crate) struct Live<'a> {
    pub(crate) dev: &'a Dma24,
    pub(crate) ddev: &'a device::Device<device::Bound>,
    pub(crate) pdev: &'a pci::Device<device::Bound>,
    pub(crate) regs: &'a Bar0,
    pub(crate) devmem: &'a Bar1,
    pub(crate) state: &'a mut XferState,
    /// Allocator of the buffer being transferred, for error records.
    pub(crate) active_alloc: u32,
}

impl<'a> Live<'a> {
    /// A transfer as written to the registers, with this device's timeout.
    pub(crate) fn program(&self, addr: u64, dev_offset: u32, len: u32, cmd: u32) -> Program {
        Program {
            addr,
            dev_offset,
            len,
            cmd,
            timeout_ms: self.dev.params.timeout_ms,
        }
    }

    /// Checks that `len` bytes at `dev_offset` fit in device memory.
    pub(crate) fn check_range(&self, dev_offset: usize, len: usize) -> Result {
        let size = self.dev.info.devmem_size;
        match dev_offset.checked_add(len) {
            Some(end) if len > 0 && end <= size => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Resets the engine (aborts a running transfer) and re-enables interrupts.
    pub(crate) fn reset_engine(&self) {
        self.regs.set_reg32(REG_CONTROL, CTRL_RESET);
        self.regs.set_reg32(REG_CONTROL, CTRL_IRQ_ENABLE);
        self.regs.set_reg32(REG_IRQ_STATUS, IRQ_DONE | IRQ_ERROR);
    }

    /// Programs `p`, starts it and waits for the interrupt, then reads the
    /// outcome from REG_STATUS. A device error becomes an errno (see
    /// [`errno_for`]) and a `dev_err` naming the cause, the faulting bus
    /// address and the trace sequence number.
    pub(crate) fn execute(&mut self, p: &Program) -> Result {
        let regs = self.regs;
        let dev = self.dev;
        let dir = if p.cmd & CMD_FROM_DEVICE != 0 { Dir::FromDevice } else { Dir::ToDevice };
        let sg = if p.cmd & CMD_SG != 0 { " (scatter-gather)" } else { "" };

        if regs.reg32(REG_STATUS) & STATUS_BUSY != 0 {
            dev_warn!(self.pdev, "{}: engine busy before start; resetting it\n", dev.name);
            self.reset_engine();
        }
        // Forget interrupts of earlier transfers, then start.
        regs.set_reg32(REG_IRQ_STATUS, IRQ_DONE | IRQ_ERROR);
        dev.done.reinit();
        regs.set_reg64(REG_DMA_ADDR, p.addr);
        regs.set_reg32(REG_DEV_OFFSET, p.dev_offset);
        regs.set_reg32(REG_DMA_LEN, p.len);
        let started = now_ns();
        regs.set_reg32(REG_DMA_CMD, p.cmd);
        bump(&dev.stats.starts, 1);

        let irq_seen = dev.done.wait_timeout_ms(p.timeout_ms);
        if irq_seen {
            dev.timing.transfer(started, now_ns());
        }
        let status = regs.reg32(REG_STATUS);
        let mut record = LastError {
            alloc: self.active_alloc,
            from_device: dir == Dir::FromDevice,
            bus_addr: p.addr,
            dev_offset: p.dev_offset,
            len: p.len,
            ..LastError::default()
        };

        if status & STATUS_BUSY != 0 {
            bump(&dev.stats.timeouts, 1);
            bump(&dev.stats.transfers_failed, 1);
            dev_err!(
                self.pdev,
                "{}: DMA {}{} of {} bytes at device offset {:#x} (bus address {:#x}) timed out \
                 after {} ms (status {:#x}); resetting the engine -> ETIMEDOUT\n",
                dev.name,
                dir.name(),
                sg,
                p.len,
                p.dev_offset,
                p.addr,
                p.timeout_ms,
                status
            );
            self.reset_engine();
            record.errno = ETIMEDOUT.to_errno();
            record.source = ErrorSource::Timeout;
            dev.record_error(record);
            return Err(ETIMEDOUT);
        }
        if !irq_seen {
            bump(&dev.stats.lost_irqs, 1);
            dev_warn!(
                self.pdev,
                "{}: transfer finished (status {:#x}) without an interrupt within {} ms\n",
                dev.name,
                status,
                p.timeout_ms
            );
        }

        if status & STATUS_ERROR != 0 {
            let code = regs.reg32(REG_ERROR);
            let fault = regs.reg64(REG_FAULT_ADDR);
            let seq = regs.reg64(REG_LAST_SEQ);
            let err = errno_for(code);
            bump(&dev.stats.device_errors, 1);
            bump(&dev.stats.transfers_failed, 1);
            dev_err!(
                self.pdev,
                "{}: DMA {}{} failed: {} ({}): bus address {:#x}, fault address {:#x}, device \
                 offset {:#x}, {} bytes, trace seq {} -> {:?}\n",
                dev.name,
                dir.name(),
                sg,
                err_name(code),
                err_cause(code),
                p.addr,
                fault,
                p.dev_offset,
                p.len,
                seq,
                err
            );
            record.errno = err.to_errno();
            record.source = ErrorSource::Device;
            record.dev_error = code;
            record.fault_addr = fault;
            record.seq = seq;
            dev.record_error(record);
            return Err(err);
        }
        if status & STATUS_DONE == 0 {
            bump(&dev.stats.transfers_failed, 1);
            dev_err!(
                self.pdev,
                "{}: transfer ended with neither DONE nor ERROR (status {:#x}) -> EIO\n",
                dev.name,
                status
            );
            record.errno = EIO.to_errno();
            record.source = ErrorSource::Device;
            dev.record_error(record);
            return Err(EIO);
        }

        bump(&dev.stats.transfers_ok, 1);
        let bytes = u64::from(p.len);
        match dir {
            Dir::ToDevice => bump(&dev.stats.bytes_to_device, bytes),
            Dir::FromDevice => bump(&dev.stats.bytes_from_device, bytes),
        }
        Ok(())
    }

    /// Single-mode DMA of the first `len` bytes of `map` to or from device
    /// memory at `dev_offset`. Gives the buffer to the device first.
    pub(crate) fn dma_single(
        &mut self,
        map: &mut SingleMap<'_>,
        dev_offset: usize,
        len: usize,
        dir: Dir,
    ) -> Result {
        if len == 0 || len > map.len() {
            return Err(EINVAL);
        }
        map.give_to_device();
        self.dma_bus(map.dma_handle(), dev_offset, len, dir)
    }

    /// Single-mode DMA of `len` bytes at bus address `handle` (a mapped or
    /// coherent buffer the device owns now) to or from device memory at
    /// `dev_offset`.
    pub(crate) fn dma_bus(&mut self, handle: DmaAddress, dev_offset: usize, len: usize, dir: Dir) -> Result {
        self.check_range(dev_offset, len)?;
        let p = self.program(handle, u32::try_from(dev_offset)?, u32::try_from(len)?, CMD_START | dir.cmd());
        self.execute(&p)
    }

    /// A descriptor list of its own in coherent memory (which the DMA API
    /// places below the device's coherent mask), for the KUnit suites to
    /// plant broken lists; the driver's transfers use the standing one
    /// ([`Live::dma_segments`]). Each entry is (bus address, length, flags);
    /// the caller sets `DESC_LAST`.
    pub(crate) fn descriptor_list(&self, segs: &[(DmaAddress, u32, u32)]) -> Result<Coherent<[Desc]>> {
        if segs.is_empty() {
            return Err(EINVAL);
        }
        let mut list = CoherentBox::<[Desc]>::zeroed_slice(self.ddev, segs.len(), GFP_KERNEL)?;
        for (desc, &(addr, len, flags)) in list.iter_mut().zip(segs) {
            *desc = Desc::new(addr, len, flags);
        }
        Ok(list.into())
    }

    /// Scatter-gather DMA of the first `len` bytes of `map`: one descriptor
    /// per mapped segment (the last one cut to fit `len`).
    pub(crate) fn dma_sg(
        &mut self,
        map: &mut SgMap<'_>,
        dev_offset: usize,
        len: usize,
        dir: Dir,
    ) -> Result {
        if len == 0 || len > map.len() {
            return Err(EINVAL);
        }
        let mut segs = KVec::new();
        let mut left = len;
        for entry in map.table().iter() {
            if left == 0 {
                break;
            }
            let n = left.min(usize::try_from(entry.dma_len())?);
            segs.push((entry.dma_address(), u32::try_from(n)?, 0), GFP_KERNEL)?;
            left -= n;
        }
        if left != 0 {
            return Err(EINVAL);
        }
        map.give_to_device();
        self.dma_segments(&segs, dev_offset, len, dir)
    }

    /// Scatter-gather DMA of `segs` (bus address, length; flags are set
    /// here), `len` bytes in all, to or from device memory at `dev_offset`,
    /// through the device's standing descriptor list.
    ///
    /// The list is one allocation of `SG_MAX_SEGMENTS` descriptors in
    /// coherent memory (which the DMA API places below the device's
    /// coherent mask), made at the first SG transfer and freed at unbind:
    /// a `dma_alloc_coherent()` + `dma_free_coherent()` per transfer costs
    /// whole milliseconds of emulated kernel code on PVM hosts.
    pub(crate) fn dma_segments(
        &mut self,
        segs: &[(DmaAddress, u32, u32)],
        dev_offset: usize,
        len: usize,
        dir: Dir,
    ) -> Result {
        self.check_range(dev_offset, len)?;
        if segs.is_empty() {
            return Err(EINVAL);
        }
        if segs.len() > SG_MAX_SEGMENTS {
            return Err(E2BIG);
        }
        let list = match self.state.descs.take() {
            Some(list) => list,
            None => CoherentBox::<[Desc]>::zeroed_slice(self.ddev, SG_MAX_SEGMENTS, GFP_KERNEL)?.into(),
        };
        // SAFETY: The device is not fetching the list: every transfer ends (DONE, ERROR, or a
        // timeout that resets the engine) before the transfer mutex, which `self` holds, is
        // released, so no START that uses the list is running; nothing else touches it.
        let descs = unsafe { list.as_mut() };
        for (i, (desc, &(addr, n, flags))) in descs.iter_mut().zip(segs).enumerate() {
            let last = if i + 1 == segs.len() { DESC_LAST } else { 0 };
            *desc = Desc::new(addr, n, flags | last);
        }
        let p = self.program(
            list.dma_handle(),
            u32::try_from(dev_offset)?,
            u32::try_from(len)?,
            CMD_START | CMD_SG | dir.cmd(),
        );
        let done = self.execute(&p);
        self.state.descs = Some(list);
        done
    }
}
