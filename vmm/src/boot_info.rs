//! The boot information the guest kernel reads at entry: the command line
//! in guest memory and either the PVH `hvm_start_info` (with the initrd as
//! module 0 and the memory map) or the Linux zero page (`boot_params`, with
//! the e820 table), depending on how the kernel is entered.

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, E820_MAX_ENTRIES_ZEROPAGE};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use linux_loader::loader::load_cmdline;
use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot::{EntryPoint, EntryProtocol};
use crate::loader::{LoadedInitrd, LoadedKernel, BZ_MAGIC};
use crate::memory::{
    E820Entry, CMDLINE_ADDR, PVH_INFO_ADDR, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR, ZERO_PAGE_ADDR,
};

/// Errors writing the boot information.
#[derive(Debug, Error)]
pub enum BootInfoError {
    #[error("cannot write the kernel command line: {0}")]
    Cmdline(#[from] linux_loader::loader::Error),
    #[error("cannot write the boot parameters: {0}")]
    BootParams(#[from] linux_loader::configurator::Error),
    #[error("the boot information cannot describe {0}")]
    TooBig(&'static str),
}

/// Write the command line and the boot information; return the entry point.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    initrd: Option<LoadedInitrd>,
    cmdline: &Cmdline,
    e820: &[E820Entry],
) -> Result<EntryPoint, BootInfoError> {
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), cmdline)?;
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .unwrap_or(0);
    if kernel.pvh {
        let mut info = hvm_start_info {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            cmdline_paddr: CMDLINE_ADDR,
            memmap_paddr: PVH_MEMMAP_ADDR,
            memmap_entries: u32::try_from(e820.len())
                .map_err(|_| BootInfoError::TooBig("the memory map"))?,
            ..Default::default()
        };
        let memmap: Vec<hvm_memmap_table_entry> = e820
            .iter()
            .map(|e| hvm_memmap_table_entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind as u32,
                reserved: 0,
            })
            .collect();
        let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
        if let Some(i) = initrd {
            info.nr_modules = 1;
            info.modlist_paddr = PVH_MODLIST_ADDR;
            params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
            let m = hvm_modlist_entry {
                paddr: i.addr,
                size: i.size,
                ..Default::default()
            };
            params.set_modules(&[m], GuestAddress(PVH_MODLIST_ADDR));
        }
        params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_ADDR));
        PvhBootConfigurator::write_bootparams(&params, mem)?;
        return Ok(EntryPoint {
            kernel_entry: kernel.entry,
            protocol: EntryProtocol::Pvh {
                start_info: PVH_INFO_ADDR,
            },
        });
    }

    let mut bp = boot_params::default();
    if let Some(h) = kernel.setup_header {
        bp.hdr = h;
    } else {
        bp.hdr.boot_flag = 0xaa55;
        bp.hdr.header = BZ_MAGIC;
        bp.hdr.kernel_alignment = 0x0100_0000;
    }
    bp.hdr.type_of_loader = 0xff;
    let below_4g = |v: u64, what| u32::try_from(v).map_err(|_| BootInfoError::TooBig(what));
    bp.hdr.cmd_line_ptr = below_4g(CMDLINE_ADDR, "the command line address")?;
    bp.hdr.cmdline_size =
        u32::try_from(cmdline_len).map_err(|_| BootInfoError::TooBig("the command line"))?;
    if let Some(i) = initrd {
        // The loader keeps the initrd below 2 GiB.
        bp.hdr.ramdisk_image = below_4g(i.addr, "an initrd above 4 GiB")?;
        bp.hdr.ramdisk_size = below_4g(i.size, "an initrd of 4 GiB or more")?;
    }
    let mut table = [boot_e820_entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    bp.e820_table = table;
    bp.e820_entries = u8::try_from(e820.len().min(E820_MAX_ENTRIES_ZEROPAGE))
        .map_err(|_| BootInfoError::TooBig("the e820 table"))?;
    let params = BootParams::new(&bp, GuestAddress(ZERO_PAGE_ADDR));
    LinuxBootConfigurator::write_bootparams(&params, mem)?;
    Ok(EntryPoint {
        kernel_entry: kernel.entry,
        protocol: EntryProtocol::Linux64 {
            zero_page: ZERO_PAGE_ADDR,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::{read_cmdline, CmdlineSpec};
    use crate::cpuid::CpuPolicy;
    use crate::loader::tests::{file_with, tiny_elf};
    use crate::loader::{inspect_initrd, inspect_kernel, load_initrd, load_kernel};
    use crate::memory::{create_guest_memory, e820_map, MIB};
    use vm_memory::Bytes;

    #[test]
    fn loads_a_pvh_elf_with_initrd() {
        let mem_size = 64 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let t = file_with(&tiny_elf(
            0x100_0000,
            &[0xf4, 0x90],
            0x1000,
            Some(0x100_0001),
        ));
        let k = inspect_kernel(t.as_path()).unwrap();
        let lk = load_kernel(&mem, &k).unwrap();
        assert!(lk.pvh);
        assert_eq!(lk.entry, 0x100_0001);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(), 0xf4);
        let it = file_with(b"070701 initrd bytes");
        let ii = inspect_initrd(it.as_path()).unwrap();
        let li = load_initrd(&mem, &ii, &k, mem_size).unwrap();
        assert_eq!(li.addr % 4096, 0);
        assert!(li.addr + li.size <= mem_size);
        let cmd = CmdlineSpec::new(CpuPolicy::Filtered, None)
            .unwrap()
            .build(1)
            .unwrap();
        let ep = write_boot_info(&mem, &lk, Some(li), &cmd, &e820_map(mem_size)).unwrap();
        assert_eq!(
            ep.protocol,
            EntryProtocol::Pvh {
                start_info: PVH_INFO_ADDR
            }
        );
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(
            usize::try_from(info.memmap_entries).unwrap(),
            e820_map(mem_size).len()
        );
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_ADDR)).unwrap();
        assert_eq!((m.paddr, m.size), (li.addr, li.size));
        let e0: hvm_memmap_table_entry = mem.read_obj(GuestAddress(PVH_MEMMAP_ADDR)).unwrap();
        assert_eq!((e0.addr, e0.type_), (0, 1));
        assert!(read_cmdline(&mem).unwrap().starts_with("console=ttyS0"));
    }

    #[test]
    fn loads_an_elf_without_pvh_through_the_64bit_protocol() {
        let mem_size = 32 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let t = file_with(&tiny_elf(0x100_0000, &[0xf4], 0x1000, None));
        let k = inspect_kernel(t.as_path()).unwrap();
        let lk = load_kernel(&mem, &k).unwrap();
        assert!(!lk.pvh);
        assert_eq!(lk.entry, 0x100_0000);
        let cmd = CmdlineSpec::new(CpuPolicy::Host, None)
            .unwrap()
            .build(1)
            .unwrap();
        let ep = write_boot_info(&mem, &lk, None, &cmd, &e820_map(mem_size)).unwrap();
        assert_eq!(
            ep.protocol,
            EntryProtocol::Linux64 {
                zero_page: ZERO_PAGE_ADDR
            }
        );
        let bp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let hdr = bp.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!(u64::from(hdr.cmd_line_ptr), CMDLINE_ADDR);
        assert_eq!(usize::from(bp.e820_entries), e820_map(mem_size).len());
    }
}
