//! The devices a VM gets, grouped by how they are wired (after
//! Firecracker's `device_manager`): [`legacy`] for the fixed ISA-style port
//! devices, [`pci`] for the PCI root and what sits on it.

pub mod legacy;
pub mod pci;

pub use self::legacy::{LegacyDeviceError, LegacyDevices};
pub use self::pci::{PciDeviceError, PciDevices, PlacedDevice};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use device_model::regs::{MAGIC, REG_MAGIC};

    use super::*;
    use crate::bus::Bus;
    use crate::memory::{create_guest_memory, PCI_MMIO_WINDOW_START};
    use crate::stop::VmControl;
    use crate::vm::{create_vm, open_kvm};

    fn read32(bus: &Bus, addr: u64) -> Option<u32> {
        let mut d = [0u8; 4];
        bus.read(addr, &mut d).then(|| u32::from_le_bytes(d))
    }

    /// Both managers on a real VM (skipped without /dev/kvm): which ports
    /// and which MMIO they claim, and that the PCI root answers through them.
    #[test]
    fn managers_fill_the_buses() {
        let Ok(kvm) = open_kvm() else {
            eprintln!("SKIPPED managers_fill_the_buses: no usable /dev/kvm");
            return;
        };
        let vm = Arc::new(create_vm(&kvm).unwrap());
        let mem = create_guest_memory(16 << 20).unwrap();
        let control = Arc::new(VmControl::new().unwrap());
        let (mut pio, mut mmio) = (Bus::new(), Bus::new());
        LegacyDevices::attach(&vm, &control, None, &mut pio).unwrap();
        let none = PciDevices::attach(&vm, &mem, Vec::new(), &mut pio, &mut mmio).unwrap();
        assert!(none.irq_routes.is_empty());
        assert_eq!(read32(&pio, 0xcf8), None, "no PCI bus without a device");
        let mut b = [0u8; 1];
        for port in [0x3f8, 0x3ff, 0x60, 0x64, 0xf4, 0xf5] {
            assert!(pio.read(port, &mut b), "port {port:#x} is claimed");
        }
        assert!(!pio.read(0x80, &mut b));

        let configs = [
            device_model::Dma24Config::default(),
            crate::pci::parse_device_spec("dma24,mask-bits=32").unwrap(),
        ];
        let devices = crate::pci::place_devices(&configs)
            .unwrap()
            .into_iter()
            .map(|(slot, config)| PlacedDevice {
                slot,
                config,
                trace: None,
            })
            .collect();
        let pci = PciDevices::attach(&vm, &mem, devices, &mut pio, &mut mmio).unwrap();
        let pins: Vec<_> = pci.irq_routes.iter().map(|r| r.ioapic_pin).collect();
        assert_eq!(pins, [16, 17], "one INTx line per device");
        let config = |slot: u32, reg: u32| {
            pio.write(0xcf8, &(1u32 << 31 | slot << 11 | reg).to_le_bytes());
            read32(&pio, 0xcfc).unwrap()
        };
        assert_eq!(config(0, 0), 0x0008_1b36, "host bridge");
        assert_eq!(config(1, 0), 0xd024_1234, "dma24");
        assert_eq!(config(2, 0), 0xd024_1234, "second dma24");
        assert_eq!(config(3, 0), 0xffff_ffff, "slot 3 is empty");
        let bar0 = u64::from(config(1, 0x10));
        assert_eq!(bar0, PCI_MMIO_WINDOW_START);
        assert_eq!(read32(&mmio, bar0 + REG_MAGIC), Some(MAGIC));
        // The second device's registers are its own: BARs placed apart,
        // each reporting its own mask.
        let bar0_b = u64::from(config(2, 0x10));
        assert_ne!(bar0_b, bar0);
        assert_eq!(read32(&mmio, bar0_b + REG_MAGIC), Some(MAGIC));
        let mask_bits = |bar: u64| {
            read32(&mmio, bar + device_model::regs::REG_CAPS)
                .map(|c| c & device_model::regs::CAPS_MASK_BITS)
        };
        assert_eq!((mask_bits(bar0), mask_bits(bar0_b)), (Some(24), Some(32)));
        pci.close();
    }
}
