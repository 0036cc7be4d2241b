//! Resident memory of a running VMM, beyond its guest's RAM.

use serde::Serialize;

/// Fields of /proc/PID/status that matter here, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
}

pub fn parse_status(text: &str) -> ProcStatus {
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kib = v
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match k {
            "VmRSS" => s.vm_rss_kib = kib,
            "VmHWM" => s.vm_hwm_kib = kib,
            "RssAnon" => s.rss_anon_kib = kib,
            "RssFile" => s.rss_file_kib = kib,
            "RssShmem" => s.rss_shmem_kib = kib,
            _ => {}
        }
    }
    s
}

/// One mapping of /proc/PID/smaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    /// Empty for an anonymous mapping.
    pub path: String,
    pub size_kib: u64,
    pub rss_kib: u64,
}

pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = fields.first() else {
            continue;
        };
        let range = first.split_once('-').and_then(|(a, b)| {
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        });
        if let Some((start, end)) = range {
            // start-end perms offset dev inode [path, which may contain spaces]
            out.push(Mapping {
                start,
                end,
                perms: fields.get(1).copied().unwrap_or("").to_string(),
                path: fields.get(5..).map_or(String::new(), |p| p.join(" ")),
                ..Mapping::default()
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kib = fields.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        match *first {
            "Size:" => m.size_kib = kib,
            "Rss:" => m.rss_kib = kib,
            _ => {}
        }
    }
    out
}

/// Guest RAM regions (bytes) for `mem_mib` MiB, as dmalab lays them out
/// (vmm/src/memory.rs `ram_ranges`): up to 3 GiB below the MMIO hole, the
/// rest above 4 GiB. QEMU's `pc` machine splits at a lower address for
/// large RAM, but for the bench's RAM both are one region.
pub fn guest_ram_regions(mem_mib: u64) -> Vec<u64> {
    let mem = mem_mib << 20;
    let low = mem.min(3 << 30);
    let mut v = vec![low];
    if mem > low {
        v.push(mem - low);
    }
    v
}

/// Resident KiB of the guest's RAM: the anonymous, writable mappings whose
/// size is exactly one RAM region (each region matched once, the most
/// resident mapping of that size first). Both dmalab (vm-memory,
/// `MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE`) and QEMU map guest RAM that
/// way; the pages resident there are the guest's, touched by the guest or
/// by the VMM loading the kernel and initrd into it. None when a region
/// has no such mapping.
pub fn guest_ram_rss_kib(maps: &[Mapping], regions: &[u64]) -> Option<u64> {
    let mut used = vec![false; maps.len()];
    let mut total = 0;
    for &bytes in regions {
        let kib = bytes / 1024;
        let best = maps
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                !used[*i] && m.path.is_empty() && m.perms.starts_with("rw") && m.size_kib == kib
            })
            .max_by_key(|(_, m)| m.rss_kib)?;
        used[best.0] = true;
        total += best.1.rss_kib;
    }
    Some(total)
}

/// One memory sample of a running VMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MemSample {
    pub t_s: f64,
    pub status: ProcStatus,
    pub guest_ram_rss_kib: Option<u64>,
}

impl MemSample {
    /// Resident KiB beyond the guest's RAM.
    pub fn beyond_guest_kib(&self) -> Option<u64> {
        self.guest_ram_rss_kib
            .map(|g| self.status.vm_rss_kib.saturating_sub(g))
    }
    pub fn anon_beyond_guest_kib(&self) -> Option<u64> {
        self.guest_ram_rss_kib
            .map(|g| self.status.rss_anon_kib.saturating_sub(g))
    }
}

pub(super) fn sample_memory(pid: u32, t_s: f64, regions: &[u64]) -> Option<MemSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(MemSample {
        t_s,
        status: parse_status(&status),
        guest_ram_rss_kib: guest_ram_rss_kib(&parse_smaps(&smaps), regions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55e8e1ba0000-55e8e1c71000 r-xp 00043000 fe:00 5374644                    /work/main/target/release/dmalab
Size:                836 kB
Rss:                 836 kB
VmFlags: rd ex mr mw me
7fbf10000000-7fbf10021000 rw-p 00000000 00:00 0 
Size:                132 kB
Rss:                   8 kB
7fbf15e00000-7fbf1de00000 rw-p 00000000 00:00 0 
Size:             131072 kB
KernelPageSize:        4 kB
Rss:               17476 kB
Anonymous:         17476 kB
VmFlags: rd wr mr mw me nr
7fbf1e000000-7fbf26000000 rw-p 00000000 fe:00 99                         /tmp/a file with spaces
Size:             131072 kB
Rss:               99999 kB
";

    #[test]
    fn smaps_and_guest_ram() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].path, "/work/main/target/release/dmalab");
        assert_eq!((maps[0].size_kib, maps[0].rss_kib), (836, 836));
        assert_eq!(maps[2].path, "");
        assert_eq!(maps[2].start, 0x7fbf15e00000);
        assert_eq!(maps[3].path, "/tmp/a file with spaces");
        // The file mapping of the same size is not guest RAM.
        assert_eq!(
            guest_ram_rss_kib(&maps, &guest_ram_regions(128)),
            Some(17476)
        );
        assert_eq!(guest_ram_rss_kib(&maps, &guest_ram_regions(256)), None);
        assert_eq!(guest_ram_regions(128), vec![128 << 20]);
        assert_eq!(guest_ram_regions(4096), vec![3 << 30, 1 << 30]);
        let s = MemSample {
            t_s: 1.0,
            status: ProcStatus {
                vm_rss_kib: 20388,
                rss_anon_kib: 17696,
                ..ProcStatus::default()
            },
            guest_ram_rss_kib: Some(17476),
        };
        assert_eq!(s.beyond_guest_kib(), Some(2912));
        assert_eq!(s.anon_beyond_guest_kib(), Some(220));
    }

    #[test]
    fn proc_status() {
        let s = parse_status(
            "Name:\tdmalab\nVmHWM:\t   20400 kB\nVmRSS:\t   20388 kB\nRssAnon:\t   17696 kB\nRssFile:\t    2692 kB\nRssShmem:\t       0 kB\n",
        );
        assert_eq!(
            s,
            ProcStatus {
                vm_rss_kib: 20388,
                vm_hwm_kib: 20400,
                rss_anon_kib: 17696,
                rss_file_kib: 2692,
                rss_shmem_kib: 0
            }
        );
    }
}
