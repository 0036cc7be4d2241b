//! The guest kernel command line: dmalab's defaults, then the user's
//! `--cmdline`, checked once before anything starts ([`CmdlineSpec::new`])
//! and assembled once the TSC rate (for `lpj=`) is known
//! ([`CmdlineSpec::build`]).

use linux_loader::cmdline::Cmdline;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::cpuid::{clearcpuid_arg, CpuPolicy};
use crate::memory::{CMDLINE_ADDR, CMDLINE_MAX_SIZE};

/// The guest kernel's timer frequency (images/kernel/dmalab.config: HZ=50,
/// images/patches/0011), used to compute `lpj=`: loops per jiffy, so a kernel
/// with another HZ gets delays off by the ratio.
pub const GUEST_HZ: u64 = 50;

/// A command line the guest kernel cannot take.
#[derive(Debug, Error)]
pub enum CmdlineError {
    #[error("kernel command line is {len} bytes, the limit is {} bytes", CMDLINE_MAX_SIZE - 1)]
    TooLong { len: usize },
    #[error("invalid kernel command line {cmdline:?}: {why}")]
    Invalid { cmdline: String, why: String },
}

/// The command line dmalab starts every guest with (before `--cmdline`):
/// a serial console, `reboot=k` (reset through the i8042, which ends the
/// VMM), `panic=-1` (reboot at once after a panic, which the VMM reports as
/// exit code 3), no TSC calibration, no spectre mitigations, one UART, and
/// for `--cpu filtered` the `clearcpuid=` list of [`crate::cpuid`].
pub fn default_cmdline(policy: CpuPolicy, lpj: u64) -> String {
    let mut s = format!(
        "console=ttyS0 reboot=k panic=-1 tsc=reliable lpj={lpj} 8250.nr_uarts=1 mitigations=off"
    );
    if let Some(c) = clearcpuid_arg(policy) {
        s.push(' ');
        s.push_str(&c);
    }
    s
}

/// `lpj=` for a TSC of `tsc_khz` (the delay loop uses the TSC on x86-64).
pub fn lpj_for(tsc_khz: u32) -> u64 {
    let lpj = u64::from(tsc_khz) * 1000 / GUEST_HZ;
    if lpj == 0 {
        // Unknown TSC rate: a 2 GHz guess.
        2_000_000_000 / GUEST_HZ
    } else {
        lpj
    }
}

/// A checked command line waiting for its `lpj=` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdlineSpec {
    policy: CpuPolicy,
    /// The user's part, trimmed (empty: none).
    extra: String,
}

impl CmdlineSpec {
    /// Checks the command line the guest would get (with the shortest
    /// `lpj=`), so a bad `--cmdline` is reported before KVM is opened.
    pub fn new(policy: CpuPolicy, extra: Option<&str>) -> Result<Self, CmdlineError> {
        let spec = CmdlineSpec {
            policy,
            extra: extra.map(str::trim).unwrap_or("").to_string(),
        };
        spec.text(0)?;
        Ok(spec)
    }

    /// The full command line with `lpj`.
    pub fn build(&self, lpj: u64) -> Result<Cmdline, CmdlineError> {
        let s = self.text(lpj)?;
        Cmdline::try_from(&s, CMDLINE_MAX_SIZE).map_err(|e| CmdlineError::Invalid {
            cmdline: s.clone(),
            why: e.to_string(),
        })
    }

    fn text(&self, lpj: u64) -> Result<String, CmdlineError> {
        let mut s = default_cmdline(self.policy, lpj);
        if !self.extra.is_empty() {
            s.push(' ');
            s.push_str(&self.extra);
        }
        if s.len() >= CMDLINE_MAX_SIZE {
            return Err(CmdlineError::TooLong { len: s.len() });
        }
        if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(CmdlineError::Invalid {
                cmdline: s.clone(),
                why: format!("character {c:?} is not printable ASCII"),
            });
        }
        Ok(s)
    }
}

/// The command line as a string (for logs).
pub fn to_string_lossy(cmdline: &Cmdline) -> String {
    cmdline
        .as_cstring()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Read back the command line from guest memory (tests, debugging).
pub fn read_cmdline(mem: &GuestMemoryMmap) -> Option<String> {
    let mut buf = vec![0u8; CMDLINE_MAX_SIZE];
    mem.read_slice(&mut buf, GuestAddress(CMDLINE_ADDR)).ok()?;
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(policy: CpuPolicy, lpj: u64, extra: Option<&str>) -> String {
        let c = CmdlineSpec::new(policy, extra).unwrap().build(lpj).unwrap();
        c.as_cstring().unwrap().into_string().unwrap()
    }

    #[test]
    fn cmdline_defaults_and_append() {
        let s = built(CpuPolicy::Filtered, 25_000_000, Some(" rdinit=/bin/sh "));
        assert!(s.starts_with("console=ttyS0 reboot=k panic=-1 tsc=reliable lpj=25000000 "));
        assert!(s.contains(" 8250.nr_uarts=1 mitigations=off clearcpuid=xsave,smap,"));
        assert!(s.ends_with(" rdinit=/bin/sh"), "{s}");
        let s = built(CpuPolicy::Host, 1, None);
        assert!(!s.contains("clearcpuid"));
        assert!(s.ends_with("mitigations=off"), "{s}");
        // Init arguments after "--" stay at the end.
        let s = built(CpuPolicy::Host, 1, Some("rdinit=/bin/sh -- -c \"echo hi\""));
        assert!(s.ends_with("rdinit=/bin/sh -- -c \"echo hi\""), "{s}");
    }

    #[test]
    fn cmdline_errors() {
        let long = "x".repeat(CMDLINE_MAX_SIZE);
        assert!(matches!(
            CmdlineSpec::new(CpuPolicy::Filtered, Some(&long)),
            Err(CmdlineError::TooLong { .. })
        ));
        assert!(matches!(
            CmdlineSpec::new(CpuPolicy::Filtered, Some("a\nb")),
            Err(CmdlineError::Invalid { .. })
        ));
        // Fits with lpj=0 but not with the real, longer lpj: caught at build.
        let base = default_cmdline(CpuPolicy::Host, 0).len();
        let edge = "y".repeat(CMDLINE_MAX_SIZE - 2 - base);
        let spec = CmdlineSpec::new(CpuPolicy::Host, Some(&edge)).unwrap();
        assert!(matches!(
            spec.build(25_000_000),
            Err(CmdlineError::TooLong { .. })
        ));
    }

    #[test]
    fn lpj_from_tsc() {
        // One jiffy of the TSC at the guest's 50 Hz.
        assert_eq!(lpj_for(2_500_000), 50_000_000);
        assert_eq!(lpj_for(0), 40_000_000);
    }
}
