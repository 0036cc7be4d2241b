//! One client connection: the device (dma24 on the client's DMA maps), its
//! regions and interrupts, and what each vfio-user command does to them.
//!
//! Region numbering is VFIO's for PCI: BAR0-5 are regions 0-5, the ROM 6,
//! config space 7, VGA 8. dma24 has BAR0 (registers), BAR1 (device memory)
//! and a 256-byte config space; the other regions exist with size 0.

use std::sync::Arc;

use device_model::{Dma24, Dma24Config, TraceSink};
use pci::regs::PCI_CFG_SPACE_SIZE;
use pci::PciDevice;
use thiserror::Error;
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_IRQ_INFO_AUTOMASKED,
    VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_INFO_NORESIZE,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};

use super::dma_space::{DmaSpace, DmaSpaceError};
use super::irqs::{EventfdInterrupts, IrqError};
use super::wire::{cmd, Fields, Message, MAX_DATA_XFER};

/// DMA_MAP flags (the protocol's): the device may read / write the map.
const DMA_MAP_READ: u32 = 1;
const DMA_MAP_WRITE: u32 = 2;
/// DMA_UNMAP flag: every map at once.
const DMA_UNMAP_ALL: u32 = 1 << 1;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("{what}: payload of {got} bytes, need {need}")]
    Short {
        what: &'static str,
        got: usize,
        need: usize,
    },
    #[error("unknown command {0}")]
    Unknown(u16),
    #[error("command {0} is not supported by this server (see vmm/README.md, serve)")]
    Unsupported(u16),
    #[error("region {0} does not exist (0..{VFIO_PCI_NUM_REGIONS})")]
    NoRegion(u32),
    #[error("region {region} access [{offset:#x}, +{count:#x}) is outside its {size:#x} bytes or over {MAX_DATA_XFER} bytes")]
    OutOfRange {
        region: u32,
        offset: u64,
        count: u32,
        size: u64,
    },
    #[error("IRQ index {0} does not exist (0..{VFIO_PCI_NUM_IRQS})")]
    NoIrq(u32),
    #[error("DMA map with {0} file descriptors (one at most)")]
    MapFds(usize),
    #[error("version: capabilities are not a NUL-terminated UTF-8 JSON string")]
    VersionString,
    #[error(transparent)]
    Dma(#[from] DmaSpaceError),
    #[error(transparent)]
    Irq(#[from] IrqError),
    #[error("device reset failed: {0}")]
    Reset(#[from] device_model::DeviceError),
}

impl SessionError {
    /// The errno the client gets back.
    pub fn errno(&self) -> i32 {
        match self {
            SessionError::Unknown(_) | SessionError::Unsupported(_) => libc::ENOTSUP,
            SessionError::Dma(e) => e.errno(),
            SessionError::Reset(_) => libc::EIO,
            _ => libc::EINVAL,
        }
    }
}

/// The device as one client sees it.
pub struct Session {
    config: Dma24Config,
    trace: Option<TraceSink>,
    space: DmaSpace,
    irqs: Arc<EventfdInterrupts>,
    device: Dma24<DmaSpace>,
    /// Sizes of regions 0..VFIO_PCI_NUM_REGIONS.
    sizes: Vec<u64>,
    /// Maps the device cannot reach (no descriptor, or read-only), kept so
    /// their unmap is not an error. Bounded like the DMA space's slots.
    unreachable: Vec<(u64, u64)>,
}

fn need<'a>(what: &'static str, p: &'a [u8], n: usize) -> Result<Fields<'a>, SessionError> {
    if p.len() < n {
        return Err(SessionError::Short {
            what,
            got: p.len(),
            need: n,
        });
    }
    Ok(Fields(p))
}

/// The JSON the server answers VERSION with: what it accepts per message.
pub fn server_capabilities() -> String {
    format!(
        "{{\"capabilities\":{{\"max_msg_fds\":{},\"max_data_xfer_size\":{},\"pgsizes\":4096}}}}",
        super::wire::MAX_FDS,
        MAX_DATA_XFER
    )
}

impl Session {
    pub fn new(config: Dma24Config, trace: Option<TraceSink>) -> Result<Self, SessionError> {
        let space = DmaSpace::default();
        let irqs = Arc::new(EventfdInterrupts::default());
        let device = Dma24::new(config.clone(), space.clone(), irqs.clone(), trace.clone())?;
        let mut sizes = vec![0u64; VFIO_PCI_NUM_REGIONS as usize];
        for bar in device.bars() {
            if let Some(s) = sizes.get_mut(usize::from(bar.index)) {
                *s = bar.size;
            }
        }
        sizes[VFIO_PCI_CONFIG_REGION_INDEX as usize] = u64::from(PCI_CFG_SPACE_SIZE);
        Ok(Session {
            config,
            trace,
            space,
            irqs,
            device,
            sizes,
            unreachable: Vec::new(),
        })
    }

    pub fn irqs(&self) -> &EventfdInterrupts {
        &self.irqs
    }

    pub fn dma_space(&self) -> &DmaSpace {
        &self.space
    }

    /// Handles one command; `Ok(body)` is the reply's body after the header.
    pub fn handle(&mut self, msg: Message) -> Result<Vec<u8>, SessionError> {
        let p = msg.payload.as_slice();
        match msg.command {
            cmd::VERSION => {
                let f = need("version", p, 4)?;
                let json = p.get(4..).unwrap_or_default();
                let text = json
                    .split_last()
                    .filter(|(nul, _)| **nul == 0)
                    .and_then(|(_, s)| std::str::from_utf8(s).ok())
                    .ok_or(SessionError::VersionString)?;
                log::info!(
                    "client protocol {}.{}: {text}",
                    f.u16(0).unwrap_or(0),
                    f.u16(2).unwrap_or(0)
                );
                let mut body = vec![0, 0, 0, 0]; // major 0, minor 0
                body.extend_from_slice(server_capabilities().as_bytes());
                body.push(0);
                Ok(body)
            }
            cmd::DMA_MAP => self.dma_map(p, msg.fds).map(|()| Vec::new()),
            cmd::DMA_UNMAP => {
                let f = need("DMA unmap", p, 24)?;
                let (flags, addr, size) = (
                    f.u32(4).unwrap_or(0),
                    f.u64(8).unwrap_or(0),
                    f.u64(16).unwrap_or(0),
                );
                if flags & DMA_UNMAP_ALL != 0 {
                    self.space.unmap_all();
                    self.unreachable.clear();
                } else if let Some(i) = self.unreachable.iter().position(|&m| m == (addr, size)) {
                    self.unreachable.swap_remove(i);
                } else {
                    self.space.unmap(addr, size)?;
                }
                log::debug!("DMA unmap [{addr:#x}, +{size:#x}) flags {flags:#x}");
                Ok(p.get(..24).unwrap_or_default().to_vec())
            }
            cmd::DEVICE_GET_INFO => {
                let flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
                Ok(le32s(&[16, flags, VFIO_PCI_NUM_REGIONS, VFIO_PCI_NUM_IRQS]))
            }
            cmd::DEVICE_GET_REGION_INFO => {
                let f = need("region info", p, 32)?;
                let index = f.u32(8).unwrap_or(u32::MAX);
                let size = *self
                    .sizes
                    .get(index as usize)
                    .ok_or(SessionError::NoRegion(index))?;
                let flags = if size > 0 {
                    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
                } else {
                    0
                };
                let mut body = le32s(&[32, flags, index, 0]);
                body.extend_from_slice(&size.to_le_bytes());
                body.extend_from_slice(&0u64.to_le_bytes()); // offset in an mmap fd: none
                Ok(body)
            }
            cmd::DEVICE_GET_IRQ_INFO => {
                let f = need("IRQ info", p, 16)?;
                let index = f.u32(8).unwrap_or(u32::MAX);
                let (flags, count) = match index {
                    VFIO_PCI_INTX_IRQ_INDEX => (
                        VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
                        1,
                    ),
                    VFIO_PCI_MSI_IRQ_INDEX => (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1),
                    i if i < VFIO_PCI_NUM_IRQS => (0, 0),
                    i => return Err(SessionError::NoIrq(i)),
                };
                Ok(le32s(&[16, flags, index, count]))
            }
            cmd::DEVICE_SET_IRQS => {
                let f = need("set IRQs", p, 20)?;
                let g = |at| f.u32(at).unwrap_or(0);
                self.irqs.set_irqs(
                    g(8),
                    g(4),
                    g(12),
                    g(16),
                    p.get(20..).unwrap_or_default(),
                    msg.fds,
                )?;
                Ok(Vec::new())
            }
            cmd::REGION_READ => {
                let (region, offset, count) = self.access(p)?;
                let mut data = vec![0u8; count as usize];
                self.region_read(region, offset, &mut data);
                let mut body = p.get(..16).unwrap_or_default().to_vec();
                body.extend_from_slice(&data);
                Ok(body)
            }
            cmd::REGION_WRITE => {
                let (region, offset, count) = self.access(p)?;
                let data = p.get(16..).unwrap_or_default();
                let data = data.get(..count as usize).ok_or(SessionError::Short {
                    what: "region write data",
                    got: data.len(),
                    need: count as usize,
                })?;
                self.region_write(region, offset, data);
                Ok(p.get(..16).unwrap_or_default().to_vec())
            }
            cmd::DEVICE_RESET => {
                self.reset()?;
                Ok(Vec::new())
            }
            c @ (cmd::DEVICE_GET_REGION_IO_FDS | cmd::DMA_READ | cmd::DMA_WRITE) => {
                Err(SessionError::Unsupported(c))
            }
            c => Err(SessionError::Unknown(c)),
        }
    }

    fn dma_map(&mut self, p: &[u8], mut fds: Vec<std::fs::File>) -> Result<(), SessionError> {
        let f = need("DMA map", p, 32)?;
        let (flags, offset, addr, size) = (
            f.u32(4).unwrap_or(0),
            f.u64(8).unwrap_or(0),
            f.u64(16).unwrap_or(0),
            f.u64(24).unwrap_or(0),
        );
        if fds.len() > 1 {
            return Err(SessionError::MapFds(fds.len()));
        }
        let rw = DMA_MAP_READ | DMA_MAP_WRITE;
        match fds.pop() {
            Some(file) if flags & rw == rw => {
                self.space.map(addr, size, file, offset, true)?;
                log::info!("DMA map [{addr:#x}, {:#x}): RAM", addr.saturating_add(size));
            }
            // Without a descriptor the client would serve DMA through
            // DMA_READ/WRITE messages, and a read-only map cannot take the
            // device's writes: neither is RAM to dma24 (ROM, in practice).
            _ => {
                if self.unreachable.len() >= super::dma_space::MAX_SLOTS {
                    return Err(DmaSpaceError::NoSlot.into());
                }
                self.unreachable.push((addr, size));
                log::info!(
                    "DMA map [{addr:#x}, {:#x}) flags {flags:#x} without a writable descriptor: not reachable by DMA",
                    addr.saturating_add(size)
                );
            }
        }
        Ok(())
    }

    /// Checks a REGION_READ/WRITE's fixed part: region, range, size.
    fn access(&self, p: &[u8]) -> Result<(u32, u64, u32), SessionError> {
        let f = need("region access", p, 16)?;
        let (offset, region, count) = (
            f.u64(0).unwrap_or(0),
            f.u32(8).unwrap_or(u32::MAX),
            f.u32(12).unwrap_or(0),
        );
        let size = *self
            .sizes
            .get(region as usize)
            .ok_or(SessionError::NoRegion(region))?;
        let end = offset.checked_add(u64::from(count));
        if count as usize > MAX_DATA_XFER || end.is_none_or(|e| e > size) {
            return Err(SessionError::OutOfRange {
                region,
                offset,
                count,
                size,
            });
        }
        Ok((region, offset, count))
    }

    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            // access() kept offset + len within 256 bytes.
            self.device
                .read_config(u16::try_from(offset).unwrap_or(0), data);
        } else if let Ok(bar) = u8::try_from(region) {
            self.device.read_bar(bar, offset, data);
        }
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) {
        if region == VFIO_PCI_CONFIG_REGION_INDEX {
            // The client places the BARs in its own address space; the
            // device's view of where they are changes nothing here.
            let _ = self
                .device
                .write_config(u16::try_from(offset).unwrap_or(0), data);
        } else if let Ok(bar) = u8::try_from(region) {
            self.device.write_bar(bar, offset, data);
        }
    }

    /// A device as after power-on: a new dma24 on the same maps, interrupts
    /// and trace (the trace continues; its transfer ids restart).
    fn reset(&mut self) -> Result<(), SessionError> {
        let device = Dma24::new(
            self.config.clone(),
            self.space.clone(),
            self.irqs.clone(),
            self.trace.clone(),
        )?;
        // The old device's worker is joined here (its transfer, if any, is
        // aborted at its next access).
        self.device = device;
        pci::InterruptSink::set_intx(&*self.irqs, false);
        log::info!("device reset");
        Ok(())
    }

    /// Waits for the device to finish what it is doing, then closes the
    /// trace (footer) if no one else holds it.
    pub fn close(self) {
        drop(self.device);
        drop(self.trace);
    }
}

fn le32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
