//! [`Dma24Config`]: what is fixed when a dma24 device is built (DMA mask,
//! overflow mode, device-memory size, PCI address), and the command-line
//! spec that sets it.
//!
//! The VMM's `--device dma24[,mask-bits=N][,overflow=reject|truncate][,mem=KIB]`
//! hands the part after `dma24,` to [`Dma24Config::parse`] (a leading `dma24`
//! token is accepted too, so the whole spec may be passed).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

use crate::regs::DEFAULT_DEVMEM_SIZE;

/// Narrowest and widest DMA mask the device can be built with.
pub const MIN_MASK_BITS: u8 = 12;
pub const MAX_MASK_BITS: u8 = 64;
pub const DEFAULT_MASK_BITS: u8 = 24;
/// Device memory (BAR1) size limits in KiB: at least a page so a driver can
/// `ioremap` it, at most 64 MiB so a VM cannot ask the host for a huge buffer.
pub const MIN_MEM_KIB: u64 = 4;
pub const MAX_MEM_KIB: u64 = 64 * 1024;

/// What the device does with a bus address beyond its DMA mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse the segment: no memory touched, ERR_MASK, error interrupt.
    #[default]
    Reject,
    /// Drop the high address bits, as hardware with only N address lines
    /// does (and as QEMU's edu does): the access lands somewhere else.
    Truncate,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Reject => "reject",
            Overflow::Truncate => "truncate",
        }
    }
}

/// Everything that is fixed when a dma24 device is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dma24Config {
    /// Width of the DMA mask in bits, `MIN_MASK_BITS..=MAX_MASK_BITS`.
    pub mask_bits: u8,
    pub overflow: Overflow,
    /// Size of device memory (BAR1) in bytes: a power of two.
    pub devmem_size: u64,
    /// PCI address in the guest, e.g. `0000:00:01.0`; used in trace records.
    pub bdf: String,
}

impl Default for Dma24Config {
    fn default() -> Self {
        Dma24Config {
            mask_bits: DEFAULT_MASK_BITS,
            overflow: Overflow::Reject,
            devmem_size: DEFAULT_DEVMEM_SIZE,
            bdf: "0000:00:01.0".to_string(),
        }
    }
}

/// Why a device spec was refused. Messages name the offending option and
/// the accepted values, since they are shown to a user as-is.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error(
        "unknown dma24 option `{0}` (expected mask-bits=N, overflow=reject|truncate or mem=KIB)"
    )]
    UnknownKey(String),
    #[error("dma24 option `{0}` needs a value, e.g. `{0}=...`")]
    MissingValue(String),
    #[error("dma24 option `{0}` is given twice")]
    Duplicate(String),
    #[error("dma24 option {key}={value}: not a number")]
    NotANumber { key: String, value: String },
    #[error("dma24 option mask-bits={0}: must be between {MIN_MASK_BITS} and {MAX_MASK_BITS}")]
    MaskBits(u64),
    #[error("dma24 option overflow={0}: expected `reject` or `truncate`")]
    Overflow(String),
    #[error(
        "dma24 option mem={0}: device memory in KiB must be a power of two between \
         {MIN_MEM_KIB} and {MAX_MEM_KIB}"
    )]
    MemSize(u64),
    #[error("dma24 bdf `{0}` is not of the form DDDD:BB:DD.F")]
    Bdf(String),
}

impl Dma24Config {
    /// Parses `mask-bits=N,overflow=reject|truncate,mem=KIB` (any order, all
    /// optional, empty means defaults) on top of [`Dma24Config::default`].
    pub fn parse(spec: &str) -> Result<Self, OptionsError> {
        let mut config = Dma24Config::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut items = spec.split(',').map(str::trim).peekable();
        if items.peek() == Some(&"dma24") {
            items.next();
        }
        for item in items.filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (item, ""),
            };
            if !matches!(key, "mask-bits" | "overflow" | "mem") {
                return Err(OptionsError::UnknownKey(key.to_string()));
            }
            if value.is_empty() {
                return Err(OptionsError::MissingValue(key.to_string()));
            }
            if seen.contains(&key) {
                return Err(OptionsError::Duplicate(key.to_string()));
            }
            seen.push(key);
            match key {
                "mask-bits" => config.mask_bits = parse_mask_bits(number(key, value)?)?,
                "overflow" => config.overflow = value.parse()?,
                _ => config.devmem_size = parse_mem_kib(number(key, value)?)?,
            }
        }
        Ok(config)
    }

    /// Sets the PCI address used in trace records, checking its form.
    pub fn with_bdf(mut self, bdf: &str) -> Result<Self, OptionsError> {
        if !is_bdf(bdf) {
            return Err(OptionsError::Bdf(bdf.to_string()));
        }
        self.bdf = bdf.to_string();
        Ok(self)
    }

    /// Checks a config built by hand (the parser only builds valid ones).
    pub fn validate(&self) -> Result<(), OptionsError> {
        parse_mask_bits(u64::from(self.mask_bits))?;
        let kib = self.devmem_size / 1024;
        if kib * 1024 != self.devmem_size {
            return Err(OptionsError::MemSize(kib));
        }
        parse_mem_kib(kib)?;
        if !is_bdf(&self.bdf) {
            return Err(OptionsError::Bdf(self.bdf.clone()));
        }
        Ok(())
    }

    /// The DMA mask as an address: all ones in the low `mask_bits` bits.
    pub fn mask(&self) -> u64 {
        mask_of(self.mask_bits)
    }
}

/// All ones in the low `bits` bits (`bits` saturates at 64).
pub fn mask_of(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl FromStr for Dma24Config {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dma24Config::parse(s)
    }
}

/// The spec form, so a config round-trips through [`Dma24Config::parse`].
impl fmt::Display for Dma24Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mask-bits={},overflow={},mem={}",
            self.mask_bits,
            self.overflow.as_str(),
            self.devmem_size / 1024
        )
    }
}

impl FromStr for Overflow {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Overflow::Reject),
            "truncate" => Ok(Overflow::Truncate),
            other => Err(OptionsError::Overflow(other.to_string())),
        }
    }
}

fn number(key: &str, value: &str) -> Result<u64, OptionsError> {
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| OptionsError::NotANumber {
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn parse_mask_bits(bits: u64) -> Result<u8, OptionsError> {
    match u8::try_from(bits) {
        Ok(b) if (MIN_MASK_BITS..=MAX_MASK_BITS).contains(&b) => Ok(b),
        _ => Err(OptionsError::MaskBits(bits)),
    }
}

fn parse_mem_kib(kib: u64) -> Result<u64, OptionsError> {
    if (MIN_MEM_KIB..=MAX_MEM_KIB).contains(&kib) && kib.is_power_of_two() {
        Ok(kib * 1024)
    } else {
        Err(OptionsError::MemSize(kib))
    }
}

/// `DDDD:BB:DD.F` in hex, as Linux prints PCI addresses.
fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spec_gives_defaults() {
        let c = Dma24Config::parse("").unwrap();
        assert_eq!(c, Dma24Config::default());
        assert_eq!(c.mask_bits, 24);
        assert_eq!(c.overflow, Overflow::Reject);
        assert_eq!(c.devmem_size, 64 * 1024);
        assert_eq!(c.mask(), 0xff_ffff);
    }

    #[test]
    fn full_spec_in_any_order() {
        let c = Dma24Config::parse("mem=128, overflow=truncate,mask-bits=32").unwrap();
        assert_eq!(c.mask_bits, 32);
        assert_eq!(c.overflow, Overflow::Truncate);
        assert_eq!(c.devmem_size, 128 * 1024);
        assert_eq!(c.mask(), 0xffff_ffff);
        assert_eq!(
            Dma24Config::parse("dma24,mask-bits=0x10")
                .unwrap()
                .mask_bits,
            16
        );
        assert_eq!(Dma24Config::parse("dma24").unwrap(), Dma24Config::default());
    }

    #[test]
    fn display_round_trips() {
        let c = Dma24Config::parse("mask-bits=64,overflow=truncate,mem=4").unwrap();
        assert_eq!(c.to_string(), "mask-bits=64,overflow=truncate,mem=4");
        assert_eq!(c.to_string().parse::<Dma24Config>().unwrap(), c);
        assert_eq!(c.mask(), u64::MAX);
    }

    #[test]
    fn errors_name_the_problem() {
        use OptionsError::*;
        let err = |s: &str| Dma24Config::parse(s).unwrap_err();
        assert_eq!(err("mask-bits=11"), MaskBits(11));
        assert_eq!(err("mask-bits=65"), MaskBits(65));
        assert_eq!(err("mask-bits=300"), MaskBits(300));
        assert_eq!(
            err("mask-bits=abc"),
            NotANumber {
                key: "mask-bits".into(),
                value: "abc".into()
            }
        );
        assert_eq!(err("overflow=wrap"), Overflow("wrap".into()));
        assert_eq!(err("mem=3"), MemSize(3));
        assert_eq!(err("mem=2"), MemSize(2));
        assert_eq!(err("mem=131072"), MemSize(131072));
        assert_eq!(err("speed=9"), UnknownKey("speed".into()));
        assert_eq!(err("mem"), MissingValue("mem".into()));
        assert_eq!(err("mem=8,mem=16"), Duplicate("mem".into()));
        assert_eq!(
            err("mask-bits=8").to_string(),
            "dma24 option mask-bits=8: must be between 12 and 64"
        );
    }

    #[test]
    fn bdf_is_checked() {
        let c = Dma24Config::default().with_bdf("0000:00:03.0").unwrap();
        assert_eq!(c.bdf, "0000:00:03.0");
        assert!(c.validate().is_ok());
        assert_eq!(
            Dma24Config::default().with_bdf("00:03.0").unwrap_err(),
            OptionsError::Bdf("00:03.0".into())
        );
        let bad = Dma24Config {
            devmem_size: 5000,
            ..Dma24Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Dma24Config {
            mask_bits: 8,
            ..Dma24Config::default()
        };
        assert_eq!(bad.validate(), Err(OptionsError::MaskBits(8)));
    }
}
