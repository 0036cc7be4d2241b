//! Puts a dma24 device on the guest's PCI bus: parses `--device`, opens the
//! trace, wires the interrupts and claims the slot and IOAPIC pin.

use std::path::Path;
use std::sync::Arc;

use device_model::trace::{Hex, MemoryLayout};
use device_model::{Dma24, Dma24Config, OptionsError, TraceError, TraceOptions, TraceSink};
use kvm_ioctls::VmFd;
use pci::PciDevice;
use thiserror::Error;
use vm_memory::GuestMemoryMmap;

use super::{IrqError, KvmInterrupts, PciError, PciRoot, DMA24_SLOT};
use crate::memory;
use crate::mptable::{PciIrqRoute, PCI_IRQ_BASE};

/// The only device type `--device` knows.
pub const DEVICE_TYPE: &str = "dma24";

#[derive(Debug, Error)]
pub enum AttachError {
    #[error(
        "unknown device {0:?}: dmalab has one device type, dma24 \
         (--device dma24[,mask-bits=N][,overflow=reject|truncate][,mem=KIB])"
    )]
    UnknownType(String),
    #[error("--device {spec}: {source}")]
    Options { spec: String, source: OptionsError },
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Irq(#[from] IrqError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("cannot start the dma24 device: {0}")]
    Device(#[from] device_model::DeviceError),
}

/// Parses a `--device` value: `dma24` optionally followed by `,key=value`s.
pub fn parse_device_spec(spec: &str) -> Result<Dma24Config, AttachError> {
    let kind = spec.split(',').next().unwrap_or("").trim();
    if kind != DEVICE_TYPE {
        return Err(AttachError::UnknownType(kind.to_string()));
    }
    let bdf = format!("0000:00:{DMA24_SLOT:02x}.0");
    Dma24Config::parse(spec)
        .and_then(|c| c.with_bdf(&bdf))
        .map_err(|source| AttachError::Options {
            spec: spec.to_string(),
            source,
        })
}

/// Opens the trace file; done before the VM exists so a bad path is a plain
/// usage error, and its clock starts at VM creation. The header records the
/// guest's address map for `mem_size` bytes of RAM (for `trace view`).
pub fn open_trace(
    path: &Path,
    config: &Dma24Config,
    mem_size: u64,
) -> Result<TraceSink, AttachError> {
    let memory = MemoryLayout {
        ram: memory::ram_ranges(mem_size)
            .into_iter()
            .map(|(start, len)| {
                [
                    Hex(start.0),
                    Hex(start
                        .0
                        .saturating_add(u64::try_from(len).unwrap_or(u64::MAX))),
                ]
            })
            .collect(),
        mmio_window: Some([
            Hex(memory::PCI_MMIO_WINDOW_START),
            Hex(memory::PCI_MMIO_WINDOW_END),
        ]),
    };
    open_trace_with_layout(path, config, Some(memory))
}

/// [`open_trace`] for a host whose address map is not known when the trace
/// opens (`dmalab serve`: the client maps memory later).
pub fn open_trace_with_layout(
    path: &Path,
    config: &Dma24Config,
    memory: Option<MemoryLayout>,
) -> Result<TraceSink, AttachError> {
    let options = TraceOptions {
        memory,
        ..TraceOptions::default()
    };
    Ok(TraceSink::create_with(path, config, options)?)
}

/// A device on the bus.
pub struct Dma24Attachment {
    pub device: Arc<Dma24<GuestMemoryMmap>>,
    pub irq_route: PciIrqRoute,
}

/// Builds the device on `mem`, wires INTx (IOAPIC pin 16 + slot) and MSI,
/// and adds it to `root` at [`DMA24_SLOT`].
pub fn attach_dma24(
    vm: Arc<VmFd>,
    mem: &GuestMemoryMmap,
    root: &mut PciRoot,
    config: Dma24Config,
    trace: Option<TraceSink>,
) -> Result<Dma24Attachment, AttachError> {
    let irq_route = PciIrqRoute {
        slot: DMA24_SLOT,
        pin: 1,
        ioapic_pin: PCI_IRQ_BASE + DMA24_SLOT - 1,
    };
    let (irq, resample) = KvmInterrupts::new(vm, u32::from(irq_route.ioapic_pin))?;
    let irq = Arc::new(irq);
    let device = Arc::new(Dma24::new(config, mem.clone(), irq.clone(), trace)?);
    let shared: Arc<dyn PciDevice> = device.clone();
    irq.start_resampler(resample, shared.clone())?;
    root.add_device(DMA24_SLOT, shared, irq_route.ioapic_pin)?;
    Ok(Dma24Attachment { device, irq_route })
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_model::Overflow;

    #[test]
    fn device_specs() {
        let c = parse_device_spec("dma24").unwrap();
        assert_eq!(
            (c.mask_bits, c.overflow, c.bdf.as_str()),
            (24, Overflow::Reject, "0000:00:01.0")
        );
        let c = parse_device_spec("dma24,mask-bits=32,overflow=truncate,mem=128").unwrap();
        assert_eq!(
            (c.mask_bits, c.overflow, c.devmem_size),
            (32, Overflow::Truncate, 128 * 1024)
        );
        let e = parse_device_spec("edu").unwrap_err().to_string();
        assert!(e.contains("one device type, dma24"), "{e}");
        let e = parse_device_spec("dma24,mask-bits=99")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--device dma24,mask-bits=99: "), "{e}");
        assert!(parse_device_spec("dma24,colour=red").is_err());
    }

    #[test]
    fn unwritable_trace_path_is_explained() {
        let c = parse_device_spec("dma24").unwrap();
        let e = open_trace(Path::new("/nonexistent-dir/trace.jsonl"), &c, 128 << 20)
            .err()
            .expect("must fail")
            .to_string();
        assert!(e.contains("/nonexistent-dir/trace.jsonl"), "{e}");
        assert!(e.contains("--trace"), "{e}");
    }
}
