//! Puts dma24 devices on the guest's PCI bus: parses `--device`, gives the
//! N-th device (0-based) slot `DMA24_SLOT + N` and its bdf, opens its
//! trace, wires its interrupts and claims the slot and IOAPIC pin.

use std::path::Path;
use std::sync::Arc;

use device_model::trace::{Hex, MemoryLayout};
use device_model::{Dma24, Dma24Config, OptionsError, TraceError, TraceOptions, TraceSink};
use kvm_ioctls::VmFd;
use pci::PciDevice;
use thiserror::Error;
use vm_memory::GuestMemoryMmap;

use super::{IrqError, KvmInterrupts, PciError, PciRoot, DMA24_SLOT, MAX_DMA24_DEVICES};
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
    #[error(
        "{given} dma24 devices asked for: dmalab hosts at most {MAX_DMA24_DEVICES} \
         (give --device at most {MAX_DMA24_DEVICES} times)"
    )]
    TooManyDevices { given: usize },
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
    Dma24Config::parse(spec)
        .and_then(|c| c.with_bdf(&bdf_of(DMA24_SLOT)))
        .map_err(|source| AttachError::Options {
            spec: spec.to_string(),
            source,
        })
}

/// The PCI address of function 0 in `slot` on bus 0.
fn bdf_of(slot: u8) -> String {
    format!("0000:00:{slot:02x}.0")
}

/// Where the devices go, in `--device` order: device N in slot
/// `DMA24_SLOT + N`, its config's bdf set to match (the trace header and
/// every record carry it). More than [`MAX_DMA24_DEVICES`] is the user's
/// error to fix.
pub fn place_devices(configs: &[Dma24Config]) -> Result<Vec<(u8, Dma24Config)>, AttachError> {
    if configs.len() > MAX_DMA24_DEVICES {
        return Err(AttachError::TooManyDevices {
            given: configs.len(),
        });
    }
    (DMA24_SLOT..)
        .zip(configs)
        .map(|(slot, config)| {
            let placed = config.clone().with_bdf(&bdf_of(slot));
            placed
                .map(|c| (slot, c))
                .map_err(|source| AttachError::Options {
                    spec: config.bdf.clone(),
                    source,
                })
        })
        .collect()
}

/// Opens the trace file; done before the VM exists so a bad path is a plain
/// usage error, and its clock starts at VM creation. The header records the
/// guest's address map for `mem_size` bytes of RAM (for `trace view`);
/// `max_size` caps the file (the sink enforces it, see device-model's
/// `trace/limit.rs`).
pub fn open_trace(
    path: &Path,
    config: &Dma24Config,
    mem_size: u64,
    max_size: u64,
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
    open_trace_with_layout(path, config, Some(memory), max_size)
}

/// [`open_trace`] for a host whose address map is not known when the trace
/// opens (`dmalab serve`: the client maps memory later).
pub fn open_trace_with_layout(
    path: &Path,
    config: &Dma24Config,
    memory: Option<MemoryLayout>,
    max_size: u64,
) -> Result<TraceSink, AttachError> {
    let options = TraceOptions {
        memory,
        max_size,
        ..TraceOptions::default()
    };
    Ok(TraceSink::create_with(path, config, options)?)
}

/// A device on the bus.
pub struct Dma24Attachment {
    pub device: Arc<Dma24<GuestMemoryMmap>>,
    pub irq_route: PciIrqRoute,
}

/// Builds the device on `mem`, wires INTx (IOAPIC pin 16 + slot - 1, so
/// each device has a line of its own) and MSI, and adds it to `root` at
/// `slot` (from [`place_devices`]).
pub fn attach_dma24(
    vm: Arc<VmFd>,
    mem: &GuestMemoryMmap,
    root: &mut PciRoot,
    slot: u8,
    config: Dma24Config,
    trace: Option<TraceSink>,
) -> Result<Dma24Attachment, AttachError> {
    let irq_route = PciIrqRoute {
        slot,
        pin: 1,
        ioapic_pin: PCI_IRQ_BASE + slot - 1,
    };
    let (irq, resample) = KvmInterrupts::new(vm, u32::from(irq_route.ioapic_pin))?;
    let irq = Arc::new(irq);
    let device = Arc::new(Dma24::new(config, mem.clone(), irq.clone(), trace)?);
    let shared: Arc<dyn PciDevice> = device.clone();
    irq.start_resampler(resample, shared.clone())?;
    root.add_device(slot, shared, irq_route.ioapic_pin)?;
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
    fn devices_get_consecutive_slots_up_to_the_limit() {
        let a = parse_device_spec("dma24").unwrap();
        let b = parse_device_spec("dma24,mask-bits=32").unwrap();
        let placed = place_devices(&[a.clone(), b]).unwrap();
        let got: Vec<_> = placed
            .iter()
            .map(|(slot, c)| (*slot, c.bdf.as_str(), c.mask_bits))
            .collect();
        assert_eq!(got, [(1, "0000:00:01.0", 24), (2, "0000:00:02.0", 32)]);
        assert!(place_devices(&[]).unwrap().is_empty());
        assert_eq!(
            place_devices(&vec![a.clone(); MAX_DMA24_DEVICES])
                .unwrap()
                .len(),
            4
        );
        let e = place_devices(&vec![a; MAX_DMA24_DEVICES + 1])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("5 dma24 devices") && e.contains("at most 4"),
            "{e}"
        );
        assert!(e.contains("--device"), "{e}");
    }

    #[test]
    fn unwritable_trace_path_is_explained() {
        let c = parse_device_spec("dma24").unwrap();
        let e = open_trace(
            Path::new("/nonexistent-dir/trace.jsonl"),
            &c,
            128 << 20,
            device_model::trace::DEFAULT_MAX_SIZE,
        )
        .err()
        .expect("must fail")
        .to_string();
        assert!(e.contains("/nonexistent-dir/trace.jsonl"), "{e}");
        assert!(e.contains("--trace"), "{e}");
    }
}
