//! What every part starts from: the options, the output folder, the images
//! and the dmalab binary (or why they are missing), and one guest boot.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::analysis::{analyse_boot, Boot};
use super::guest::{DRIVER_READY, MEM_MIB};
use super::memory::guest_ram_regions;
use super::options::Options;
use super::table::{row, Row};
use super::vmm::{run_vmm, Capture, Vmm};

pub struct Inputs {
    pub opts: Options,
    pub out: PathBuf,
    pub images: Result<PathBuf, String>,
    pub dmalab: Result<PathBuf, String>,
}

impl Inputs {
    /// The images folder and dmalab binary a boot needs; when either is
    /// missing, the row that says `metric` was not measured, and why.
    pub fn guest_artifacts(
        &self,
        part: &str,
        metric: &str,
        how: &str,
    ) -> Result<(PathBuf, PathBuf), Box<Row>> {
        match (&self.images, &self.dmalab) {
            (Ok(i), Ok(d)) => Ok((i.clone(), d.clone())),
            (Err(e), _) | (_, Err(e)) => Err(Box::new(
                row(part, metric, how).not_measured(&format!("no images or no dmalab: {e}")),
            )),
        }
    }

    /// Boots `cmd` until driver-ready (plus `grace`), logs its console under
    /// `logs/NAME.log`; Err says why it could not run (for the notes).
    pub(super) fn one_boot(
        &self,
        vmm: Vmm,
        run: usize,
        cmd: Command,
        name: &str,
        grace: Duration,
    ) -> Result<(Boot, Capture), String> {
        self.one_boot_until(vmm, run, cmd, name, grace, DRIVER_READY)
    }

    /// [`Inputs::one_boot`] with another console line as its "ready" marker
    /// (the built-in driver's boot prints no insmod line).
    pub(super) fn one_boot_until(
        &self,
        vmm: Vmm,
        run: usize,
        cmd: Command,
        name: &str,
        grace: Duration,
        marker: &str,
    ) -> Result<(Boot, Capture), String> {
        let log = self.out.join("logs").join(format!("{name}.log"));
        let cap = run_vmm(
            cmd,
            marker,
            Duration::from_secs(400),
            grace,
            &guest_ram_regions(MEM_MIB),
        )
        .map_err(|e| format!("{name}: {e}"))?;
        let _ = std::fs::write(&log, cap.console());
        let b = analyse_boot(vmm, run, &cap, &log);
        match (&b.error, b.driver_ready_wall_s) {
            (Some(e), _) => progress(&format!("  {name}: FAILED: {e}")),
            (None, Some(w)) => progress(&format!(
                "  {name}: driver ready after {w:.1} s (guest Run /init at {} s), exit {:?} after {:.1} s",
                b.run_init_guest_s.map_or("?".into(), |g| format!("{g:.1}")),
                b.exit_code,
                b.total_wall_s
            )),
            _ => {}
        }
        Ok((b, cap))
    }
}

pub fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}
