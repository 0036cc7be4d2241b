// SPDX-License-Identifier: GPL-2.0

//! `dmalab_uapi`: the read()/write() path, file offsets and ioctl argument
//! checks of `/dev/dma24-N`, without user space.

use super::*;

#[kunit_tests(dmalab_uapi)]
mod cases {
    use super::*;

    /// The read()/write() path (bounce buffer, chunking, file offsets) with
    /// kernel memory standing in for user memory: 3 chunks and a bit.
    #[test]
    fn read_write_path_in_chunks() {
        let Some(dev) = device_under_test() else { return };
        let pos = 1000usize;
        let len = (3 * CHUNK + 123).min(dev.info.devmem_size - pos);
        let (mut src, mut dst) = match (
            KVec::from_elem(0u8, len, GFP_KERNEL),
            KVec::from_elem(0u8, len, GFP_KERNEL),
        ) {
            (Ok(s), Ok(d)) => (s, d),
            _ => {
                let allocated = false;
                assert!(allocated);
                return;
            }
        };
        for (i, b) in src.iter_mut().enumerate() {
            *b = pattern::byte(0x77, i);
        }
        let saved = dev.allocator();
        dev.set_allocator(Allocator::KmallocDma);
        let before = tally(&dev);
        let mut at = 0;
        let wrote = chardev::user_transfer(&dev, pos, len, Dir::ToDevice, &mut |piece| {
            let n = piece.len();
            piece.copy_from_slice(&src[at..at + n]);
            at += n;
            n
        });
        let mut at = 0;
        let read = chardev::user_transfer(&dev, pos, len, Dir::FromDevice, &mut |piece| {
            let n = piece.len();
            dst[at..at + n].copy_from_slice(piece);
            at += n;
            n
        });
        dev.set_allocator(saved);
        let (starts, ..) = report(&dev, &before);
        let chunks = len.div_ceil(CHUNK) as u64;
        let mut c = Checks::new();
        check!(c, matches!(wrote, Ok(n) if n == len), "write of {} bytes: {:?}", len, wrote);
        check!(c, matches!(read, Ok(n) if n == len), "read of {} bytes: {:?}", len, read);
        check!(c, src[..] == dst[..], "data read back differs");
        check!(c, starts == 2 * chunks, "{} STARTs for {} chunks each way", starts, chunks);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Offsets and lengths are checked before any DMA: negative or past the
    /// end -> EINVAL, writing at the end -> ENOSPC, reading there -> 0 bytes,
    /// long requests clipped to device memory.
    #[test]
    fn file_offsets_checked() {
        let Some(dev) = device_under_test() else { return };
        let size = dev.info.devmem_size;
        let end = size as i64;
        let mut c = Checks::new();
        let r = chardev::user_range(&dev, -1, 10, Dir::FromDevice);
        check!(c, r == Err(EINVAL), "read at -1: {:?}", r);
        let r = chardev::user_range(&dev, end + 1, 10, Dir::ToDevice);
        check!(c, r == Err(EINVAL), "write past the end: {:?}", r);
        let r = chardev::user_range(&dev, end, 10, Dir::ToDevice);
        check!(c, r == Err(ENOSPC), "write at the end: {:?}", r);
        let r = chardev::user_range(&dev, end, 10, Dir::FromDevice);
        check!(c, r == Ok(0), "read at the end: {:?}", r);
        let r = chardev::user_range(&dev, end - 5, 10, Dir::ToDevice);
        check!(c, r == Ok(5), "write across the end: {:?}", r);
        let r = chardev::user_range(&dev, 0, 0, Dir::ToDevice);
        check!(c, r == Ok(0), "empty write: {:?}", r);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// ioctls with a bad user pointer fail with EFAULT (no oops), unknown
    /// ones with ENOTTY, an unknown allocator number with EINVAL.
    #[test]
    fn ioctl_bad_arguments() {
        let Some(dev) = device_under_test() else { return };
        // Page 0 is never mapped: copies to or from it fault and are fixed up.
        const BAD: usize = 0x10;
        let mut c = Checks::new();
        for (name, cmd) in [
            ("GET_INFO", chardev::DMA24_IOC_GET_INFO),
            ("SET_ALLOC", chardev::DMA24_IOC_SET_ALLOC),
            ("GET_COUNTERS", chardev::DMA24_IOC_GET_COUNTERS),
            ("GET_LAST_ERROR", chardev::DMA24_IOC_GET_LAST_ERROR),
            ("SELFTEST", chardev::DMA24_IOC_SELFTEST),
        ] {
            let r = chardev::ioctl(&dev, cmd, BAD);
            check!(c, r == Err(EFAULT), "{} with a bad pointer: {:?}", name, r);
        }
        let r = chardev::ioctl(&dev, 0xd2ff, 0);
        check!(c, r == Err(ENOTTY), "unknown ioctl: {:?}", r);
        let r = Allocator::from_u32(Allocator::ALL.len() as u32);
        check!(c, r.is_err(), "allocator {} accepted", Allocator::ALL.len());
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

