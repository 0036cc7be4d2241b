//! The dma24 device: PCI function, register file, device memory and a
//! worker thread that runs transfers.
//!
//! Threads and locks: the vCPU thread calls the [`PciDevice`] methods; a
//! START is checked there (checks that need no memory) and handed to the
//! worker, which does the copy, then updates the registers and raises the
//! interrupt. Register state lives in `Shared::state`, device memory in
//! `Shared::devmem`; the worker holds `devmem` for a whole transfer and takes
//! `state` briefly inside it (bus-master check per access), the vCPU thread
//! never holds both, so there is no lock-order cycle.
//!
//! Interrupt sink calls are made with `state` held, so INTx level changes
//! reach the host in the order they happen; a sink must not call back into
//! the device.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use thiserror::Error;
use vm_memory::GuestMemory;

use crate::config_space::dma24_config_space;
use crate::devmem::DeviceMemory;
use crate::dma24_config::{Dma24Config, OptionsError, Overflow};
use crate::engine::{check_single, DmaMask, Engine, Job, Report};
use crate::outcome::{Direction, Outcome};
use crate::regfile::{split_write, Identity, RegWrite, Registers};
use crate::regs::*;
use crate::trace::{DmaEvent, TraceSink, Tracer};
use pci::regs::{PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use pci::{
    BarInfo, BarReprogrammingParams, ConfigSpace, ConfigSpaceError, InterruptSink, PciDevice,
};

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("invalid dma24 configuration: {0}")]
    Config(#[from] OptionsError),
    #[error("dma24 configuration space: {0}")]
    ConfigSpace(#[from] ConfigSpaceError),
    #[error("cannot start the dma24 worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The dma24 PCI device over guest memory `M`.
pub struct Dma24<M: GuestMemory + Send + Sync + 'static> {
    shared: Arc<Shared<M>>,
    jobs: Option<Sender<(Job, u64)>>,
    worker: Option<JoinHandle<()>>,
}

struct Shared<M> {
    mem: M,
    config: Dma24Config,
    id: Identity,
    state: Mutex<State>,
    /// Signalled when a transfer finishes (for `wait_idle`).
    idle: Condvar,
    devmem: Mutex<DeviceMemory>,
    tracer: Tracer,
    irq: Arc<dyn InterruptSink>,
    /// `config.devmem_size` as a length.
    devmem_len: usize,
}

struct State {
    pci: ConfigSpace,
    regs: Registers,
    /// Bumped by CTRL_RESET: a job started in an older generation stops at
    /// its next access and its completion is discarded.
    generation: u64,
    /// Jobs handed to the worker and not finished.
    in_flight: usize,
    /// Id of the last START (trace `transfer`).
    last_transfer: u64,
    /// The INTx level last sent to the sink.
    intx: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M: GuestMemory + Send + Sync + 'static> Dma24<M> {
    /// Builds the device and starts its worker. `mem` is the guest memory
    /// DMA goes to (`GuestMemoryMmap` clones cheaply); `trace`, when given,
    /// receives one record per DMA access.
    pub fn new(
        config: Dma24Config,
        mem: M,
        irq: Arc<dyn InterruptSink>,
        trace: Option<TraceSink>,
    ) -> Result<Self, DeviceError> {
        config.validate()?;
        let mut caps = u32::from(config.mask_bits) | CAPS_SG;
        if config.overflow == Overflow::Truncate {
            caps |= CAPS_TRUNCATE;
        }
        // validate() keeps devmem_size at most 64 MiB.
        let devmem_size = usize::try_from(config.devmem_size)
            .map_err(|_| OptionsError::MemSize(config.devmem_size / 1024))?;
        let devmem_size_reg = u32::try_from(config.devmem_size)
            .map_err(|_| OptionsError::MemSize(config.devmem_size / 1024))?;
        let shared = Arc::new(Shared {
            mem,
            id: Identity {
                caps,
                devmem_size: devmem_size_reg,
            },
            state: Mutex::new(State {
                pci: dma24_config_space(config.devmem_size)?,
                regs: Registers::default(),
                generation: 0,
                in_flight: 0,
                last_transfer: 0,
                intx: false,
            }),
            config,
            idle: Condvar::new(),
            devmem: Mutex::new(DeviceMemory::new(devmem_size)),
            tracer: Tracer::new(trace),
            irq,
            devmem_len: devmem_size,
        });
        let (jobs, rx) = mpsc::channel::<(Job, u64)>();
        let worker_shared = Arc::clone(&shared);
        let worker = thread::Builder::new()
            .name("dma24-worker".into())
            .spawn(move || {
                for (job, generation) in rx {
                    worker_shared.run_job(&job, generation);
                }
            })
            .map_err(DeviceError::Thread)?;
        Ok(Dma24 {
            shared,
            jobs: Some(jobs),
            worker: Some(worker),
        })
    }

    pub fn config(&self) -> &Dma24Config {
        &self.shared.config
    }

    /// The trace this device writes to, if any.
    pub fn trace_sink(&self) -> Option<&TraceSink> {
        self.shared.tracer.sink()
    }

    /// Waits until no transfer is queued or running; false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let st = lock(&self.shared.state);
        let (_st, res) = self
            .shared
            .idle
            .wait_timeout_while(st, timeout, |s| s.in_flight > 0)
            .unwrap_or_else(PoisonError::into_inner);
        !res.timed_out()
    }

    fn write_reg(&self, st: &mut State, w: RegWrite) {
        if st.regs.write_plain(w) {
            return;
        }
        // Every register with side effects is 32 bits wide: bits() fits.
        #[allow(clippy::cast_possible_truncation)]
        let bits = w.bits() as u32;
        match w.base {
            REG_CONTROL => {
                if bits & CTRL_RESET != 0 {
                    st.regs.reset();
                    st.generation += 1;
                    // In the trace, in order with the DMA records (state
                    // lock held, as for START's records).
                    self.shared.tracer.reset(st.last_transfer);
                    self.shared.sync_irq(st, false);
                }
                if w.mask & 0xff != 0 {
                    let was_on = st.regs.control & CTRL_IRQ_ENABLE != 0;
                    st.regs.control = bits & CTRL_IRQ_ENABLE;
                    let now_on = st.regs.control & CTRL_IRQ_ENABLE != 0;
                    // Turning interrupts on with causes pending is an event.
                    self.shared.sync_irq(st, now_on && !was_on);
                }
            }
            REG_IRQ_STATUS => {
                st.regs.irq_status &= !bits;
                self.shared.sync_irq(st, false);
            }
            REG_DMA_CMD if bits != 0 => {
                if let Some(job) = self.shared.start(st, bits) {
                    let sent = self.jobs.as_ref().map(|tx| tx.send((job, st.generation)));
                    if !matches!(sent, Some(Ok(()))) {
                        // The worker is gone (only during teardown).
                        st.in_flight -= 1;
                        st.regs.status &= !STATUS_BUSY;
                    }
                }
            }
            _ => {} // read-only registers ignore writes
        }
    }
}

impl<M: GuestMemory + Send + Sync + 'static> Shared<M> {
    fn mask(&self) -> DmaMask {
        DmaMask {
            bits: self.config.mask_bits,
            overflow: self.config.overflow,
        }
    }

    /// Validates a START without touching memory. Returns the job to hand
    /// to the worker, or refuses it at once (traced, ERROR, error interrupt).
    fn start(&self, st: &mut State, cmd: u32) -> Option<Job> {
        if cmd & (CMD_START | CMD_RESERVED) == 0 {
            return None; // direction/mode bits alone do nothing
        }
        st.last_transfer += 1;
        let r = &st.regs;
        let job = Job {
            transfer: st.last_transfer,
            dir: if cmd & CMD_FROM_DEVICE != 0 {
                Direction::FromDevice
            } else {
                Direction::ToDevice
            },
            sg: cmd & CMD_SG != 0,
            addr: r.dma_addr,
            len: if cmd & CMD_SG != 0 { 0 } else { r.dma_len },
            dev_offset: r.dev_offset,
        };
        let devmem = self.devmem_len;
        let refusal = if cmd & CMD_RESERVED != 0 {
            Some(Outcome::BadCommand)
        } else if r.status & STATUS_BUSY != 0 {
            Some(Outcome::Busy)
        } else if !st.pci.command_has(PCI_COMMAND_MASTER) {
            Some(Outcome::BmeOff)
        } else if job.sg {
            (job.dev_offset as usize >= devmem).then_some(Outcome::BadOffset)
        } else {
            check_single(job.len, job.dev_offset, devmem).err()
        };
        if let Some(outcome) = refusal {
            let seq = self.tracer.record(DmaEvent {
                transfer: job.transfer,
                segment: 0,
                dir: job.dir,
                requested_addr: job.addr,
                effective_addr: None,
                len: job.len.into(),
                dev_offset: job.dev_offset.into(),
                mask_bits: self.config.mask_bits,
                outcome,
                hash: None,
            });
            let report = Report {
                failure: Some(outcome),
                last_seq: seq,
                fault_addr: Some(job.addr),
                ..Report::default()
            };
            // A refused START leaves a running transfer running.
            let busy = st.regs.status & STATUS_BUSY;
            self.complete(st, &job, &report);
            st.regs.status |= busy;
            return None;
        }
        st.regs.status = STATUS_BUSY;
        st.regs.error = ERR_NONE;
        st.in_flight += 1;
        Some(job)
    }

    /// The worker's side of a transfer.
    fn run_job(&self, job: &Job, generation: u64) {
        let gate = || {
            let st = lock(&self.state);
            if st.generation != generation {
                Err(Outcome::Aborted)
            } else if !st.pci.command_has(PCI_COMMAND_MASTER) {
                Err(Outcome::BmeOff)
            } else {
                Ok(())
            }
        };
        let report = {
            let mut devmem = lock(&self.devmem);
            let devmem = devmem.as_mut_slice();
            Engine::new(&self.mem, self.mask(), &self.tracer).run(job, devmem, &gate)
        };
        let mut st = lock(&self.state);
        if st.generation == generation {
            self.complete(&mut st, job, &report);
        } else {
            // Reset while running: the guest no longer waits for this
            // transfer, but the bytes it moved did move.
            self.count_bytes(&mut st, job, &report);
        }
        st.in_flight -= 1;
        self.idle.notify_all();
    }

    fn count_bytes(&self, st: &mut State, job: &Job, report: &Report) {
        let r = &mut st.regs;
        match job.dir {
            Direction::FromDevice => r.count_bytes_from_device += report.bytes,
            _ => r.count_bytes_to_device += report.bytes,
        }
    }

    /// Publishes a transfer's end: status, error, counters, interrupt.
    fn complete(&self, st: &mut State, job: &Job, report: &Report) {
        self.count_bytes(st, job, report);
        let r = &mut st.regs;
        r.last_seq = report.last_seq;
        match report.failure {
            None => {
                r.status = STATUS_DONE;
                r.error = ERR_NONE;
                r.count_transfers += 1;
                r.irq_status |= IRQ_DONE;
            }
            Some(outcome) => {
                r.status = STATUS_ERROR;
                r.error = outcome.error_code();
                r.count_faults += 1;
                r.fault_addr = report.fault_addr.unwrap_or(job.addr);
                r.irq_status |= IRQ_ERROR;
            }
        }
        self.sync_irq(st, true);
    }

    /// Brings the interrupt outputs in line with the registers. `event`:
    /// something just happened that deserves an MSI if one is due.
    fn sync_irq(&self, st: &mut State, event: bool) {
        let pending = st.regs.irq_status != 0 && st.regs.control & CTRL_IRQ_ENABLE != 0;
        let msi = st.pci.msi_enabled();
        st.pci.set_interrupt_status(pending && !msi);
        let level = pending && !msi && !st.pci.command_has(PCI_COMMAND_INTX_DISABLE);
        if level != st.intx {
            st.intx = level;
            self.irq.set_intx(level);
        }
        if msi && pending && event {
            if let Some((address, data)) = st.pci.msi_message() {
                self.irq.signal_msi(address, data);
            }
        }
    }
}

impl<M: GuestMemory + Send + Sync + 'static> PciDevice for Dma24<M> {
    fn read_config(&self, offset: u16, data: &mut [u8]) {
        lock(&self.shared.state).pci.read(offset, data);
    }

    fn write_config(&self, offset: u16, data: &[u8]) -> Vec<BarReprogrammingParams> {
        let mut st = lock(&self.shared.state);
        let moved = st.pci.write(offset, data);
        // Interrupt Disable or MSI Enable may have changed.
        self.shared.sync_irq(&mut st, false);
        moved
    }

    fn bars(&self) -> Vec<BarInfo> {
        lock(&self.shared.state).pci.bars()
    }

    fn read_bar(&self, bar: u8, offset: u64, data: &mut [u8]) {
        let st = lock(&self.shared.state);
        if !st.pci.command_has(PCI_COMMAND_MEMORY) || bar > BAR_DEVMEM {
            data.fill(0xff); // not decoding: master abort
        } else if bar == BAR_REGS {
            st.regs.read(offset, data, self.shared.id);
        } else {
            drop(st);
            let devmem = lock(&self.shared.devmem);
            let devmem = devmem.as_slice();
            for (i, out) in data.iter_mut().enumerate() {
                let at = offset
                    .checked_add(i as u64)
                    .and_then(|a| usize::try_from(a).ok());
                *out = at.and_then(|a| devmem.get(a)).copied().unwrap_or(0);
            }
        }
    }

    fn write_bar(&self, bar: u8, offset: u64, data: &[u8]) {
        let mut st = lock(&self.shared.state);
        if !st.pci.command_has(PCI_COMMAND_MEMORY) || bar > BAR_DEVMEM {
            return;
        }
        if bar == BAR_REGS {
            for w in split_write(offset, data) {
                self.write_reg(&mut st, w);
            }
        } else {
            drop(st);
            let mut devmem = lock(&self.shared.devmem);
            let devmem = devmem.as_mut_slice();
            for (i, &b) in data.iter().enumerate() {
                let at = offset
                    .checked_add(i as u64)
                    .and_then(|a| usize::try_from(a).ok());
                if let Some(slot) = at.and_then(|a| devmem.get_mut(a)) {
                    *slot = b;
                }
            }
        }
    }

    fn intx_asserted(&self) -> bool {
        lock(&self.shared.state).intx
    }
}

impl<M: GuestMemory + Send + Sync + 'static> Drop for Dma24<M> {
    /// Cancels what is running (it stops at its next access) and joins the
    /// worker.
    fn drop(&mut self) {
        lock(&self.shared.state).generation += 1;
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                log::error!("dma24 worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
