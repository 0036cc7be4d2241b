//! End-to-end tests of the `dmalab` binary with mini guests: a few bytes of
//! 32-bit code wrapped in a PVH ELF, booted exactly like a vmlinux. They run
//! in milliseconds and check every way a run can end (exit codes), the debug
//! ports, the console watcher and the int3 completion.

mod common;

use common::*;

macro_rules! need_kvm {
    () => {
        if !have_kvm() {
            eprintln!("SKIPPED: /dev/kvm is not available");
            return;
        }
    };
}

#[test]
fn clean_reset_exits_0_and_times_the_first_instruction() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("hello from a mini guest\n").reset().hang();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "hello from a mini guest\n");
    assert!(
        r.stderr.contains("first guest instruction at"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("i8042 reset"), "{}", r.dump());
}

#[test]
fn panic_message_then_reset_exits_3() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
        .reset()
        .hang();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 3, "{}", r.dump());
}

#[test]
fn panic_end_line_exits_3_without_a_reset() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("Kernel panic - not syncing: x\n---[ end Kernel panic - not syncing: x ]---\n")
        .hang();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 3, "{}", r.dump());
}

#[test]
fn exit_port_status() {
    need_kvm!();
    let mut ok = Asm::new();
    ok.exit(0).hang();
    let r = run_mini(&ok.code, &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let mut fail = Asm::new();
    fail.exit(7).hang();
    let r = run_mini(&fail.code, &[]);
    assert_eq!(r.code, 5, "{}", r.dump());
    assert!(r.stderr.contains("status 7"), "{}", r.dump());
}

#[test]
fn halt_message_exits_0() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("[   3.1] reboot: System halted\n").cli_hlt().hang();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
}

#[test]
fn boot_timer_port_and_marker_log_the_boot_time() {
    need_kvm!();
    let mut a = Asm::new();
    a.timer(123).print("READY\n").timer(7).reset();
    let r = run_mini(&a.code, &["--boot-marker", "READY"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(
        r.stderr.contains("guest boot time:") && r.stderr.contains("(boot-timer port)"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("(boot marker \"READY\""), "{}", r.dump());
    assert!(r.stderr.contains("guest checkpoint 7"), "{}", r.dump());
}

#[test]
fn timeout_exits_6() {
    need_kvm!();
    let mut a = Asm::new();
    a.hang();
    let t = std::time::Instant::now();
    let r = run_mini_for(&a.code, "1", &[]);
    assert_eq!(r.code, 6, "{}", r.dump());
    assert!(t.elapsed().as_secs() < 10, "the VMM did not stop promptly");
}

#[test]
fn triple_fault_exits_4() {
    need_kvm!();
    // An IDT of limit 0: the #UD cannot be delivered -> #DF -> triple fault.
    let mut a = Asm::new();
    let idtr = GUEST_BASE + 0x800;
    a.lidt(idtr).ud2().org(idtr).bytes(&[0, 0, 0, 0, 0, 0]);
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 4, "{}", r.dump());
}

#[test]
fn int3_reaches_the_guest_handler() {
    need_kvm!();
    // In long mode, entered through the 64-bit boot protocol (no PVH note).
    // On PVM the emulator cannot run int3 at CPL0: dmalab completes it by
    // injecting #BP. On hardware KVM it simply runs. Either way the guest's
    // handler must run once and return after the int3. (Long mode because
    // PVM's emulator cannot run a 32-bit `iret` either.)
    let handler = GUEST_BASE + 0x400;
    let idt = GUEST_BASE + 0x800;
    let idtr = GUEST_BASE + 0xf00;
    let stack = GUEST_BASE + 0xe00;
    let mut a = Asm::new();
    a.mov_esp(stack)
        .lidt64(idtr)
        .int3()
        .print("after\n")
        .reset()
        .hang();
    a.org(handler).print("BP\n").iretq();
    a.org(idt);
    for _ in 0..4 {
        a.gate64(handler);
    }
    a.org(idtr)
        .bytes(&63u16.to_le_bytes())
        .bytes(&u64::from(idt).to_le_bytes());
    let r = run_elf(&long_mode_elf(&a.code), &["--log-level", "debug"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(
        r.stderr.contains("via the 64-bit boot protocol"),
        "{}",
        r.dump()
    );
    assert_eq!(r.stdout, "BP\nafter\n", "{}", r.dump());
    if host_is_pvm() {
        assert!(
            r.stderr.contains("could not emulate int3") && r.stderr.contains("#BP injected"),
            "{}",
            r.dump()
        );
    }
}

#[test]
fn emulation_failure_is_reported_not_hung() {
    need_kvm!();
    // xrstor: PVM's emulator fails on it (KVM_EXIT_INTERNAL_ERROR); hardware
    // raises #UD (CR4.OSXSAVE is off), which with no IDT is a triple fault.
    let mut a = Asm::new();
    a.mov_eax(GUEST_BASE + 0x800)
        .bytes(&[0x0f, 0xae, 0x28])
        .hang();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 4, "{}", r.dump());
    if host_is_pvm() {
        assert!(r.stderr.contains("emulation failure"), "{}", r.dump());
        assert!(r.stderr.contains("0f ae 28"), "{}", r.dump());
        assert!(r.stderr.contains("xrstor"), "{}", r.dump());
        assert!(r.stderr.contains("rip "), "{}", r.dump());
    }
}

#[test]
fn bzimage_enters_at_the_64bit_entry_with_a_zero_page() {
    need_kvm!();
    // Payload: 0x200 bytes of padding (the 32-bit entry), then 64-bit code
    // that checks RSI -> zero page with cmd_line_ptr = 0x20000.
    let mut a = Asm::new();
    a.org(GUEST_BASE + 0x200);
    a.bytes(&[0x8b, 0x86, 0x28, 0x02, 0x00, 0x00]) // mov eax, [rsi+0x228]
        .bytes(&[0x3d, 0x00, 0x00, 0x02, 0x00]); // cmp eax, 0x20000
    let jne_at = a.code.len();
    a.bytes(&[0x75, 0x00]); // jne bad (patched below)
    a.print("zero page ok\n").reset().hang();
    let bad = a.code.len();
    a.code[jne_at + 1] = common::rel8(bad, jne_at + 2);
    a.print("bad zero page\n").exit(1).hang();
    let r = run_elf(&tiny_bzimage(&a.code), &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "zero page ok\n", "{}", r.dump());
    assert!(r.stderr.contains("BzImage, entry 0x100200"), "{}", r.dump());
}

#[test]
fn port_exit_round_trip_cost() {
    need_kvm!();
    // 20000 `out` to a reserved debug port (handled by a device, ignored),
    // then exit. The VMM's share of each round trip is the dispatch; the
    // rest is KVM (and, on PVM, emulating the loop at CPL0).
    const N: u32 = 20_000;
    let mut a = Asm::new();
    a.timer(1)
        .mov_dx(0xf6)
        .bytes(&[0xb9])
        .bytes(&N.to_le_bytes()); // mov ecx, N
    let top = a.code.len();
    a.out_dx_al().bytes(&[0x49]); // dec ecx
    let back = common::rel8(top, a.code.len() + 2);
    a.bytes(&[0x75, back]); // jnz top
    a.timer(2).exit(0);
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let t = |n: &str| {
        let l = r
            .stderr
            .lines()
            .find(|l| l.contains(&format!("guest checkpoint {n} at")))
            .unwrap();
        let v: String = l
            .rsplit("at ")
            .next()
            .unwrap()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        v.parse::<f64>().unwrap()
    };
    let per_exit_us = (t("2") - t("1")) * 1000.0 / f64::from(N);
    eprintln!("port I/O round trip (guest out + VMM dispatch + resume): {per_exit_us:.2} us");
    assert!(per_exit_us < 100.0, "{per_exit_us} us per exit");
}

#[test]
fn silent_halt_with_interrupts_off_exits_0() {
    need_kvm!();
    // No console message: the VMM finds the vCPU halted with IF=0.
    let mut a = Asm::new();
    a.print("bye\n").cli_hlt().hang();
    let t = std::time::Instant::now();
    let r = run_mini(&a.code, &[]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(r.stderr.contains("guest halted"), "{}", r.dump());
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn two_vcpus_start_and_stop() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("smp\n").reset().hang();
    let r = run_mini(&a.code, &["--vcpus", "2"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "smp\n");
}

#[test]
fn stdin_reaches_the_guest_uart() {
    need_kvm!();
    // Poll LSR.DR, read RBR, echo it with a prefix, three times, then reset.
    let mut a = Asm::new();
    for _ in 0..3 {
        a.mov_dx(0x3fd);
        let top = a.code.len();
        a.bytes(&[0xec]) // in al, dx
            .bytes(&[0xa8, 0x01]); // test al, 1
        let back = common::rel8(top, a.code.len() + 2);
        a.bytes(&[0x74, back]) // jz top
            .mov_dx(0x3f8)
            .bytes(&[0xec]) // in al, dx
            .bytes(&[0x88, 0xc3]) // mov bl, al
            .print("got ")
            .bytes(&[0x88, 0xd8]) // mov al, bl
            .out_dx_al()
            .print("\n");
    }
    a.reset().hang();
    let elf = temp_file("echo.elf", &pvh_elf(&a.code));
    let r = dmalab_stdin(
        &[
            "run",
            "--kernel",
            elf.0.to_str().unwrap(),
            "--mem",
            "16",
            "--timeout",
            "30",
        ],
        b"xyz",
    );
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "got x\ngot y\ngot z\n", "{}", r.dump());
}

/// `--profile`: a guest that counts down in a loop (CPL 0) and then halts
/// with interrupts on (so the halt probe lets it be) until the timeout. The
/// report must place every kernel sample in the loop's page and see the halt.
#[test]
fn profile_places_samples_in_the_loop_and_the_halt() {
    need_kvm!();
    let mut a = Asm::new();
    // mov ecx, 400000; spin: dec ecx; jnz spin; sti; hlt; jmp $
    a.bytes(&[0xb9]).bytes(&400_000u32.to_le_bytes());
    a.bytes(&[0x49, 0x75, 0xfd, 0xfb, 0xf4]).hang();
    let report = temp_file("profile.txt", b"");
    let r = run_mini_for(&a.code, "1.5", &["--profile", report.0.to_str().unwrap()]);
    assert_eq!(r.code, 6, "{}", r.dump());
    let text = std::fs::read_to_string(&report.0).unwrap();
    let field = |label: &str| -> usize {
        let line = text
            .lines()
            .find(|l| l.ends_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in\n{text}"));
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let total: usize = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("# ")?
                .split_once(" samples, ")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample count in\n{text}"));
    let kernel = field("guest kernel (CPL 0)");
    let halted = field("halted (idle: waiting for an interrupt)");
    // 1 kHz for 1.5 s; a busy host delays kicks, so ask for a fifth.
    assert!(total >= 300, "{total} samples\n{text}");
    assert_eq!(field("guest user mode (CPL 3)"), 0, "{text}");
    assert_eq!(kernel + halted, total, "{text}");
    assert!(halted * 4 >= total, "the halt is most of the run\n{text}");
    // No symbol table in a mini guest: kernel samples are named by page.
    // They are all in the loop's page, except one or two that land in the
    // VMM's entry trampoline (two instructions, the first an exit) when a
    // kick comes that early (seen once in CI, 2026-12-01).
    let in_page = |page: u64| -> usize {
        let label = format!("[no symbol, page {page:#x}]");
        text.lines()
            .find(|l| l.ends_with(&label))
            .map_or(0, |l| l.split_whitespace().next().unwrap().parse().unwrap())
    };
    let in_loop = in_page(0x100000);
    let in_trampoline = in_page(vmm::memory::TRAMPOLINE_ADDR);
    assert_eq!(in_loop + in_trampoline, kernel, "{text}");
    assert!(in_trampoline <= 2, "{text}");
}

/// `fwait` at CPL 0 (Linux's fpu__drop() runs one when a task exits with
/// its FPU registers live): PVM's emulator cannot run it and dmalab skips
/// it; hardware runs it (nothing pending). Either way the guest goes on.
#[test]
fn fwait_in_kernel_code_does_not_stop_the_guest() {
    need_kvm!();
    let mut a = Asm::new();
    a.bytes(&[0x9b]).print("after fwait\n").reset().hang();
    let r = run_mini(&a.code, &["--log-level", "debug"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "after fwait\n", "{}", r.dump());
    if host_is_pvm() {
        assert!(r.stderr.contains("could not emulate fwait"), "{}", r.dump());
    }
}

/// How many port writes the run's vCPU 0 applied from KVM's queue
/// (`console_tx.rs`), from the `--log-level debug` statistics.
fn queued_port_writes(r: &Run) -> u64 {
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("more port writes queued"))
        .unwrap_or_else(|| panic!("no exit statistics\n{}", r.dump()));
    let n = line.split(" port I/O exits (").nth(1).unwrap();
    n.split(' ').next().unwrap().parse().unwrap()
}

fn kvm_queues_port_writes() -> bool {
    let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
    kvm.check_extension(kvm_ioctls::Cap::CoalescedPio)
}

/// Console output before the tty takes over (the THR-empty interrupt off,
/// as Linux's console writes): the first byte exits and turns KVM's queue
/// on, the rest are queued instead of exiting, and all reach the console
/// complete and in order before the run ends. KVM's ring holds about 170
/// writes; the write that finds it full exits (and the vCPU drains it), so
/// a long text is queued all but a few bytes.
#[test]
fn console_bytes_are_queued_in_order() {
    need_kvm!();
    let short = "one short line, queued whole\n";
    let long: String = (0..40)
        .map(|i| format!("line {i:02} of queued output\n"))
        .collect();
    for (text, full_ring) in [(short.to_string(), false), (long, true)] {
        let mut a = Asm::new();
        a.print(&text).reset().hang();
        let r = run_mini(&a.code, &["--log-level", "debug"]);
        assert_eq!(r.code, 0, "{}", r.dump());
        assert_eq!(r.stdout, text, "{}", r.dump());
        let queued = queued_port_writes(&r);
        let len = text.len() as u64;
        match (kvm_queues_port_writes(), full_ring) {
            (false, _) => assert_eq!(queued, 0, "{}", r.dump()),
            (true, false) => assert_eq!(queued, len - 1, "{}", r.dump()),
            (true, true) => assert!(
                queued < len - 1 && queued >= len - len / 100,
                "{queued} of {len} queued\n{}",
                r.dump()
            ),
        }
    }
}

/// Once the guest turns the THR-empty interrupt on with the PC's interrupt
/// gate (MCR OUT2) open (the tty driver, for interrupt-driven output) every
/// THR write exits, so that interrupt comes at once, and they keep exiting
/// after it turns the bit off again: the queue is off for good (switching
/// costs an ioctl of about 4 ms on PVM).
#[test]
fn thr_empty_interrupt_turns_the_queue_off_for_good() {
    need_kvm!();
    let mut a = Asm::new();
    a.print("console\n");
    a.mov_dx(0x3fc).mov_al(0x08).out_dx_al(); // MCR = OUT2
    a.mov_dx(0x3f9).mov_al(0x02).out_dx_al(); // IER = THR empty
    a.print("interrupt-driven\n");
    a.mov_dx(0x3f9).mov_al(0x00).out_dx_al(); // IER = 0
    a.print("polled again\n").reset().hang();
    let r = run_mini(&a.code, &["--log-level", "debug"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(
        r.stdout,
        "console\ninterrupt-driven\npolled again\n",
        "{}",
        r.dump()
    );
    let expect = if kvm_queues_port_writes() {
        "console\n".len() as u64 - 1
    } else {
        0
    };
    assert_eq!(queued_port_writes(&r), expect, "{}", r.dump());
}

/// Linux's port probe (autoconfig) sets every IER bit with OUT2 clear (the
/// console's setup wrote MCR = DTR | RTS; the UART's reset value has OUT2
/// set) and clears them again at once: no interrupt can reach the guest, so
/// the console's writes after it are still queued.
#[test]
fn port_probe_of_ier_leaves_the_queue_on() {
    need_kvm!();
    let mut a = Asm::new();
    a.mov_dx(0x3fc).mov_al(0x03).out_dx_al(); // MCR = DTR | RTS
    a.print("before\n");
    a.mov_dx(0x3f9).mov_al(0x0f).out_dx_al(); // IER = all interrupts
    a.mov_dx(0x3f9).mov_al(0x00).out_dx_al(); // IER = 0
    a.print("after the probe\n").reset().hang();
    let r = run_mini(&a.code, &["--log-level", "debug"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.stdout, "before\nafter the probe\n", "{}", r.dump());
    let expect = if kvm_queues_port_writes() {
        "before\nafter the probe\n".len() as u64 - 1
    } else {
        0
    };
    assert_eq!(queued_port_writes(&r), expect, "{}", r.dump());
}
