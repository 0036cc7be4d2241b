//! The vocabulary shared by the DMA engine, the register file and the
//! trace: which way a DMA access goes and how it ended.

use serde::{Deserialize, Serialize};

use crate::regs;

/// Which way one DMA access moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Guest RAM -> device memory (Linux's DMA_TO_DEVICE).
    ToDevice,
    /// Device memory -> guest RAM (DMA_FROM_DEVICE).
    FromDevice,
    /// The device reads a 16-byte scatter-gather descriptor from guest RAM.
    DescriptorFetch,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToDevice => "to_device",
            Direction::FromDevice => "from_device",
            Direction::DescriptorFetch => "descriptor_fetch",
        }
    }
}

/// How one attempted DMA access (or a START refused before any access)
/// ended. Each has a fixed error code, shown in REG_ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Moved, address within the mask.
    Ok,
    /// Moved, but to/from an address with the high bits dropped
    /// (overflow=truncate): the bytes went somewhere the driver did not ask.
    Truncated,
    /// Address or address+length beyond the mask (overflow=reject).
    RejectedMask,
    /// The effective range is not (entirely) guest RAM.
    RejectedRam,
    /// Command.BUS_MASTER was clear.
    BmeOff,
    /// Reserved flag bits, CHAIN together with LAST, or a zero-length data
    /// descriptor.
    BadDescriptor,
    /// Zero length, or longer than device memory.
    BadLength,
    /// Device offset + length beyond device memory.
    BadOffset,
    /// Too many data descriptors, or a list that never ends.
    ListTooLong,
    /// START while a transfer was running.
    Busy,
    /// Reserved bits set in REG_DMA_CMD.
    BadCommand,
    /// CTRL_RESET (or device teardown) cut the transfer short.
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Truncated => "truncated",
            Outcome::RejectedMask => "rejected_mask",
            Outcome::RejectedRam => "rejected_ram",
            Outcome::BmeOff => "bme_off",
            Outcome::BadDescriptor => "bad_descriptor",
            Outcome::BadLength => "bad_length",
            Outcome::BadOffset => "bad_offset",
            Outcome::ListTooLong => "list_too_long",
            Outcome::Busy => "busy",
            Outcome::BadCommand => "bad_command",
            Outcome::Aborted => "aborted",
        }
    }

    /// True when bytes were moved.
    pub fn moved(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Truncated)
    }

    /// The REG_ERROR code this outcome reports (ERR_NONE when bytes moved).
    pub fn error_code(self) -> u32 {
        match self {
            Outcome::Ok | Outcome::Truncated => regs::ERR_NONE,
            Outcome::RejectedMask => regs::ERR_MASK,
            Outcome::RejectedRam => regs::ERR_RAM,
            Outcome::BmeOff => regs::ERR_BME_OFF,
            Outcome::BadDescriptor => regs::ERR_BAD_DESCRIPTOR,
            Outcome::BadLength => regs::ERR_BAD_LENGTH,
            Outcome::BadOffset => regs::ERR_BAD_OFFSET,
            Outcome::ListTooLong => regs::ERR_DESC_LIST_TOO_LONG,
            Outcome::Busy => regs::ERR_BUSY,
            Outcome::BadCommand => regs::ERR_BAD_COMMAND,
            Outcome::Aborted => regs::ERR_ABORTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for o in [
            Outcome::Ok,
            Outcome::Truncated,
            Outcome::RejectedMask,
            Outcome::RejectedRam,
            Outcome::BmeOff,
            Outcome::BadDescriptor,
            Outcome::BadLength,
            Outcome::BadOffset,
            Outcome::ListTooLong,
            Outcome::Busy,
            Outcome::BadCommand,
            Outcome::Aborted,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
            assert_eq!(o.moved(), o.error_code() == regs::ERR_NONE);
        }
        for d in [
            Direction::ToDevice,
            Direction::FromDevice,
            Direction::DescriptorFetch,
        ] {
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.as_str())
            );
        }
    }

    #[test]
    fn error_codes_are_distinct() {
        let codes = [
            Outcome::RejectedMask,
            Outcome::RejectedRam,
            Outcome::BmeOff,
            Outcome::BadDescriptor,
            Outcome::BadLength,
            Outcome::BadOffset,
            Outcome::ListTooLong,
            Outcome::Busy,
            Outcome::BadCommand,
            Outcome::Aborted,
        ]
        .map(Outcome::error_code);
        let mut sorted = codes.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, (1..=10).collect::<Vec<u32>>());
    }

    #[test]
    fn every_error_code_has_a_name_and_a_cause() {
        for code in regs::ERR_NONE..=regs::ERR_ABORTED {
            assert_ne!(regs::err_name(code), "ERR_UNKNOWN", "code {code}");
            assert_ne!(
                regs::err_cause(code),
                "unknown device error code",
                "code {code}"
            );
        }
        assert_eq!(regs::err_name(regs::ERR_ABORTED + 1), "ERR_UNKNOWN");
        assert_eq!(regs::err_name(regs::ERR_BAD_COMMAND), "ERR_BAD_COMMAND");
    }
}
