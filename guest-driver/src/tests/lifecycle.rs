// SPDX-License-Identifier: GPL-2.0

//! `dmalab_lifecycle`: unbind and rebind with the device in use.

use super::*;

#[kunit_tests(dmalab_lifecycle)]
mod cases {
    use super::*;

    /// Unbind the device from dmalab (the remove path frees everything:
    /// IRQ, BARs, /dev node, debugfs, registry entry; DMA-API debugging
    /// reports any leaked mapping here), check it is unusable, bind it
    /// again and do a round trip on the new binding.
    #[test]
    fn unbind_and_rebind() {
        let Some(dev) = device_under_test() else { return };
        let pdev = dev.pdev.clone();
        let index = dev.index;
        sys::release_driver(pdev.as_ref());
        let still_alive = dev.is_alive();
        let after_unbind = dev.with_live(|_| Ok(()));
        let still_listed = registry::devices().map_or(true, |v| v.iter().any(|d| Arc::ptr_eq(d, &dev)));
        drop(dev);
        let attached = sys::attach_driver(pdev.as_ref());
        let again = registry::devices().ok().and_then(|v| {
            v.into_iter()
                .find(|d| core::ptr::eq::<kernel::pci::Device>(&*d.pdev, &*pdev))
        });
        let mut c = Checks::new();
        check!(c, !still_alive, "device still alive after unbind");
        check!(c, after_unbind == Err(ENODEV), "use after unbind gave {:?}, expected ENODEV", after_unbind);
        check!(c, !still_listed, "device still in the registry after unbind");
        check!(c, matches!(attached, Ok(true)), "rebind: {:?}", attached);
        match again {
            Some(dev) => {
                check!(c, dev.index == index, "rebound as dma24-{}, was dma24-{}", dev.index, index);
                let before = tally(&dev);
                let rt = dev.with_live(|live| Ok(RoundTrip::run(live, Allocator::KmallocDma, 0, 4096, 0, 0xee)));
                report(&dev, &before);
                match rt {
                    Ok(rt) => check_round_trip(&mut c, "after rebind", &rt),
                    Err(e) => c.check(with_device_failed(e), format_args!("device")),
                }
            }
            None => check!(c, false, "no device bound after rebind"),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}
