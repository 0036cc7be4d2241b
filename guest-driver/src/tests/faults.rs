// SPDX-License-Identifier: GPL-2.0

//! `dmalab_faults`: transfers programmed wrongly on purpose (bypassing the
//! DMA API), each of which the device must refuse with the right error code,
//! and the errno table. The host trace shows each planted fault (README.md,
//! "Planted faults").

use super::*;

/// What a planted fault did.
struct Planted {
    /// Outcome of the deliberately wrong transfer.
    result: Result,
    /// The address it was planted at (0 if none).
    addr: u64,
    /// A correct transfer right after it (if the case does one).
    after: Option<Result>,
    last: LastError,
    devmem_bad: usize,
}

/// Runs `f` (which returns the planted address, the outcome and an optional
/// follow-up outcome) on a device-owned, filled 256-byte ZONE_DMA buffer.
fn plant(
    dev: &Dma24,
    f: impl FnOnce(&mut Live<'_>, &mut Mapping<'_>) -> Result<(u64, Result, Option<Result>)>,
) -> Result<Planted> {
    let before = tally(dev);
    let res = dev.with_live(|live| {
        let mut map = Mapping::new(live, Allocator::KmallocDma, 256, 0, Dir::ToDevice)?;
        fill(&mut map, 256, 0x11);
        if let Mapping::Single(m) = &mut map {
            m.give_to_device();
        }
        let (addr, result, after) = f(live, &mut map)?;
        drop(map);
        let devmem_bad = devmem_mismatches(live, 0, 256, 0x11)?;
        Ok((addr, result, after, devmem_bad))
    });
    report(dev, &before);
    let (addr, result, after, devmem_bad) = res?;
    Ok(Planted {
        result,
        addr,
        after,
        last: dev.last_error(),
        devmem_bad,
    })
}

fn single_handle(map: &Mapping<'_>) -> Result<u64> {
    match map {
        Mapping::Single(m) => Ok(m.dma_handle()),
        Mapping::Sg(_) | Mapping::Coherent(_) => Err(EINVAL),
    }
}

/// Checks a planted fault the device must refuse with `code` -> `errno`.
fn check_refused(c: &mut Checks, p: &Planted, code: u32, errno: i32) {
    diag!(
        "planted: {:?}; last error {} (code {}), bus {:#x}, fault {:#x}, seq {}",
        p.result,
        err_name(p.last.dev_error),
        p.last.dev_error,
        p.last.bus_addr,
        p.last.fault_addr,
        p.last.seq
    );
    let got = p.result.err().map_or(0, |e| e.to_errno());
    check!(c, got == errno, "errno {}, expected {}", got, errno);
    check!(c, p.last.source == ErrorSource::Device, "last error source {:?}", p.last.source);
    check!(c, p.last.dev_error == code, "REG_ERROR {} ({}), expected {} ({})", p.last.dev_error, err_name(p.last.dev_error), code, err_name(code));
    check!(c, p.last.seq != 0, "no trace sequence number reported");
    if let Some(after) = &p.after {
        check!(c, after.is_ok(), "the correct transfer after the fault failed: {:?}", after);
    }
}

/// `Some(bits)` if some bus address is beyond the device's mask; otherwise
/// marks the case skipped.
fn mask_bits_below_64(dev: &Dma24) -> Option<u32> {
    if dev.info.mask_bits >= 64 {
        sys::kunit_skip("the device's DMA mask is 64 bits: no address is beyond it");
        return None;
    }
    Some(dev.info.mask_bits)
}

#[kunit_tests(dmalab_faults)]
mod cases {
    use super::*;

    /// Planted: REG_DMA_ADDR = a mapped buffer's bus address + 2^mask_bits,
    /// bypassing the DMA API. overflow=reject: ERR_MASK -> EFAULT, fault
    /// address = the planted one. overflow=truncate: the device wraps the
    /// address onto the buffer itself and the transfer "works".
    #[test]
    fn over_mask_address() {
        let Some(dev) = device_under_test() else { return };
        let Some(bits) = mask_bits_below_64(&dev) else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)? + (1u64 << bits);
            Ok((addr, live.execute(&live.program(addr, 0, 256, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) if dev.info.truncates() => {
                diag!("device truncates: {:?}, {} bytes differ from the aliased buffer", p.result, p.devmem_bad);
                check!(c, p.result.is_ok(), "truncating device refused: {:?}", p.result);
                check!(c, p.devmem_bad == 0, "{} bytes differ: the wrapped address did not alias the buffer", p.devmem_bad);
            }
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == p.addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, p.addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: 64 bytes starting 16 bytes below the end of the mask (the
    /// range crosses it). ERR_MASK -> EFAULT. Skipped on a truncating device
    /// (the access would wrap into low memory).
    #[test]
    fn over_mask_crossing() {
        let Some(dev) = device_under_test() else { return };
        if mask_bits_below_64(&dev).is_none() {
            return;
        }
        if dev.info.truncates() {
            sys::kunit_skip("the device truncates: a crossing access wraps instead of faulting");
            return;
        }
        let addr = dev.info.dma_mask - 15;
        let p = plant(&dev, |live, _| Ok((addr, live.execute(&live.program(addr, 0, 64, CMD_START)), None)));
        let mut c = Checks::new();
        match p {
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a correct descriptor list whose one descriptor points
    /// 2^mask_bits above a mapped buffer. ERR_MASK -> EFAULT (reject mode).
    #[test]
    fn over_mask_sg_descriptor() {
        let Some(dev) = device_under_test() else { return };
        let Some(bits) = mask_bits_below_64(&dev) else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)? + (1u64 << bits);
            let list = live.descriptor_list(&[(addr, 256, DESC_LAST)])?;
            let r = live.execute(&live.program(list.dma_handle(), 0, 256, CMD_START | CMD_SG));
            Ok((addr, r, None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) if dev.info.truncates() => {
                check!(c, p.result.is_ok() && p.devmem_bad == 0, "truncating device: {:?}, {} bytes differ", p.result, p.devmem_bad);
            }
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == p.addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, p.addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: bus mastering cleared in the PCI Command register (behind
    /// the PCI core's back), then a correct transfer. ERR_BME_OFF -> EPERM.
    /// With the Command register restored the same transfer works.
    #[test]
    fn bus_master_off() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let handle = single_handle(map)?;
            let cfg = live.pdev.config_space();
            let command = cfg.read16(PCI_COMMAND);
            cfg.write16(command & !PCI_COMMAND_MASTER, PCI_COMMAND);
            let r = map.dma(live, 0, 256, Dir::ToDevice);
            cfg.write16(command, PCI_COMMAND);
            let after = map.dma(live, 0, 256, Dir::ToDevice);
            Ok((handle, r, Some(after)))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BME_OFF, EPERM.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: REG_DMA_LEN = 0. ERR_BAD_LENGTH -> EINVAL.
    #[test]
    fn zero_length() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&live.program(addr, 0, 0, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_LENGTH, EINVAL.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: 64 bytes at 16 bytes before the end of device memory.
    /// ERR_BAD_OFFSET -> ERANGE.
    #[test]
    fn past_device_memory() {
        let Some(dev) = device_under_test() else { return };
        let off = u32::try_from(dev.info.devmem_size - 16).unwrap_or(u32::MAX);
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&live.program(addr, off, 64, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_OFFSET, ERANGE.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a reserved bit (bit 7) in REG_DMA_CMD. ERR_BAD_COMMAND ->
    /// EOPNOTSUPP.
    #[test]
    fn reserved_command_bit() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&live.program(addr, 0, 64, CMD_START | 1 << 7)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_COMMAND, eopnotsupp().to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a descriptor with a reserved flag (bit 4).
    /// ERR_BAD_DESCRIPTOR -> EPROTO.
    #[test]
    fn reserved_descriptor_flag() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            let list = live.descriptor_list(&[(addr, 64, DESC_LAST | 1 << 4)])?;
            let r = live.execute(&live.program(list.dma_handle(), 0, 64, CMD_START | CMD_SG));
            Ok((addr, r, None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_DESCRIPTOR, eproto().to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// The errno of every device error code (no device needed).
    #[test]
    fn errno_table() {
        let table: [(u32, i32); 10] = [
            (ERR_MASK, EFAULT.to_errno()),
            (ERR_RAM, ENXIO.to_errno()),
            (ERR_BME_OFF, EPERM.to_errno()),
            (ERR_BAD_LENGTH, EINVAL.to_errno()),
            (ERR_BAD_OFFSET, ERANGE.to_errno()),
            (ERR_BAD_DESCRIPTOR, eproto().to_errno()),
            (ERR_DESC_LIST_TOO_LONG, E2BIG.to_errno()),
            (ERR_BUSY, EBUSY.to_errno()),
            (ERR_BAD_COMMAND, eopnotsupp().to_errno()),
            (ERR_ABORTED, EIO.to_errno()),
        ];
        let mut c = Checks::new();
        for (code, errno) in table {
            let got = errno_for(code).to_errno();
            check!(c, got == errno, "{} -> {}, expected {}", err_name(code), got, errno);
        }
        // The two errnos the driver builds itself from the C constants must
        // be the Linux ABI's (asm-generic/errno.h), returned negated.
        check!(c, eproto().to_errno() == -71, "EPROTO is {}, expected -71", eproto().to_errno());
        check!(c, eopnotsupp().to_errno() == -95, "EOPNOTSUPP is {}, expected -95", eopnotsupp().to_errno());
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

