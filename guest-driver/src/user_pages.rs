// SPDX-License-Identifier: GPL-2.0

//! Pinned user pages through raw bindings: what the 2.4-era `kiobuf`
//! (`map_user_kiobuf()` + `lock_kiovec()`) became. [`UserPages`] pins the
//! pages behind a user buffer with `pin_user_pages_fast()` (`FOLL_WRITE`
//! when the device will write them) and unpins them on drop with
//! `unpin_user_pages_dirty_lock()`, marking them dirty if the device wrote
//! them, so the page cache / swap sees the new contents.
//!
//! The 7.2 Rust API has `kernel::page::Page` for pages the kernel owns, but
//! nothing that pins another address space's pages.

use kernel::{bindings, page::PAGE_SIZE, prelude::*};

/// The pages behind `len` bytes of the current task's memory at `addr`,
/// pinned (FOLL_PIN) until drop.
///
/// # Invariants
///
/// `pages` holds `pages.len()` pages pinned with `pin_user_pages_fast()` by
/// `self`, unpinned once, in `drop`.
pub(crate) struct UserPages {
    pages: KVec<*mut bindings::page>,
    /// Offset of the first byte in the first page.
    offset: usize,
    len: usize,
    /// Unpin with `make_dirty`: pinned for the device to write them.
    dirty: bool,
}

// SAFETY: The pins belong to `self`, not to the task that took them; unpinning works from any task.
unsafe impl Send for UserPages {}

/// Number of pages `len` bytes starting at `addr` touch.
pub(crate) fn pages_spanned(addr: usize, len: usize) -> Option<usize> {
    let first = addr & !(PAGE_SIZE - 1);
    let end = addr.checked_add(len)?;
    Some(end.checked_next_multiple_of(PAGE_SIZE)?.checked_sub(first)? / PAGE_SIZE)
}

/// Whether the current task has a user address space (kernel threads have none).
///
/// Asked through `get_task_mm()` rather than by reading `current->mm` from Rust
/// (`kernel::current!().mm()`): on this project's GCC-built kernel, bindgen's
/// (clang's) `struct task_struct` puts `mm` at offset 0x360 while the C code reads it at
/// 0x390, so the Rust read sees another field.
fn current_has_user_memory() -> bool {
    let task = kernel::task::Task::current_raw();
    // SAFETY: `task` is the running task, alive for this call; `get_task_mm()` takes a reference
    // on its mm (NULL for kernel threads), dropped below.
    let mm = unsafe { bindings::get_task_mm(task) };
    if mm.is_null() {
        return false;
    }
    // SAFETY: `mm` holds the reference `get_task_mm()` took; we are in process context.
    unsafe { bindings::mmput(mm) };
    true
}

impl UserPages {
    /// Pins the pages of `addr..addr + len` in the current task's address
    /// space, for writing by the device if `device_writes`.
    ///
    /// `EINVAL` for an empty or wrapping range; `EFAULT` if the task has no
    /// user address space (a kernel thread) or any page of the range is not
    /// mapped with the access needed (nothing stays pinned then).
    pub(crate) fn pin(addr: usize, len: usize, device_writes: bool) -> Result<Self> {
        let count = match pages_spanned(addr, len) {
            Some(n) if len > 0 => n,
            _ => return Err(EINVAL),
        };
        // `pin_user_pages_fast()` dereferences `current->mm` before any check: a kernel thread
        // (KUnit) must not get there.
        if !current_has_user_memory() {
            return Err(EFAULT);
        }
        let nr = c_int::try_from(count).map_err(|_| EINVAL)?;
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        let flags = if device_writes { bindings::FOLL_WRITE } else { 0 };
        let start = addr & !(PAGE_SIZE - 1);
        // SAFETY: `pages` has room for `count` pointers; the current task has an mm (checked
        // above); the call checks the range against the address space itself.
        let got = unsafe {
            bindings::pin_user_pages_fast(start as c_ulong, nr, flags, pages.as_mut_ptr())
        };
        let pinned = usize::try_from(got).unwrap_or(0);
        // SAFETY: `pin_user_pages_fast()` wrote `pinned` valid page pointers (0 on an error).
        unsafe { pages.inc_len(pinned.min(count)) };
        // INVARIANT: `pages` are the pages just pinned.
        let this = Self {
            pages,
            offset: addr - start,
            len,
            dirty: device_writes,
        };
        if got < 0 {
            return Err(Error::from_errno(got));
        }
        if pinned != count {
            // Part of the range is not mapped: `this` unpins what was pinned.
            return Err(EFAULT);
        }
        Ok(this)
    }

    /// The pinned pages, in order.
    pub(crate) fn page_ptrs(&self) -> &[*mut bindings::page] {
        &self.pages
    }

    /// Offset of the first byte in the first page.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for UserPages {
    fn drop(&mut self) {
        if self.pages.is_empty() {
            return;
        }
        // SAFETY: By the type invariants every entry is a page pinned by `self`; unpinned once.
        unsafe {
            bindings::unpin_user_pages_dirty_lock(
                self.pages.as_mut_ptr(),
                self.pages.len() as c_ulong,
                self.dirty,
            )
        };
    }
}
