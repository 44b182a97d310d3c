//! A session thread's stack: where it ends, recorded when the thread starts, and the giving back of the
//! pages a deep call left touched below the frames that run the session. A TLS handshake goes far deeper
//! than anything else a session does (ring's RSA signing keeps its exponentiation table on the stack), and
//! a touched stack page stays in memory for the thread's life: 16 KiB more per idle TLS session than per
//! plain one, measured, of which this gives back all but the page under the caller's frame.
//!
//! Threads that did not record their stack (inetd's main thread, tests) are left alone.

use std::cell::Cell;

use nix::libc;

thread_local! {
    /// The lowest address of this thread's stack, or 0 when it was not recorded.
    static LOW: Cell<usize> = const { Cell::new(0) };
}

/// Kept below the caller's frame: room for the `madvise` call's own frames, which must not lose theirs.
const MARGIN: usize = 4096;

/// Records the current thread's stack, so that [`trim`] may act on it. Called as a session thread starts.
pub fn record() {
    LOW.set(lowest_address().unwrap_or(0));
}

/// The lowest address of the current thread's stack, as the thread library knows it.
fn lowest_address() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and destroyed once.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (got == 0 && size > 0).then_some(addr as usize)
    }
}

/// Gives back the pages of the current thread's stack below the caller's frame (less `MARGIN`): their
/// contents are dead, and a later call that goes as deep finds zeroed pages again. Best effort.
#[inline(never)]
pub fn trim() {
    let low = LOW.get();
    if low == 0 {
        return;
    }
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    // SAFETY: [low, here - MARGIN) lies within this thread's own stack, below every live frame (the
    // stack grows down, and the frames of this call fit in MARGIN): no reference points into it.
    unsafe { crate::pages::give_back(low, here.saturating_sub(MARGIN)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Touches about `kib` KiB of stack below the caller.
    #[inline(never)]
    fn go_deep(kib: usize) -> u8 {
        let mut page = [0u8; 1024];
        page[std::hint::black_box(7)] = 1;
        let below = if kib > 1 { go_deep(kib - 1) } else { 0 };
        std::hint::black_box(&mut page)[7] + below
    }

    /// Resident KiB of the mapping that holds `addr`, from /proc/self/smaps.
    fn resident_kib(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            let range = first.split_once('-').and_then(|(lo, hi)| {
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            });
            match (range, line.strip_prefix("Rss:")) {
                (Some((lo, hi)), _) => inside = lo <= addr && addr < hi,
                (None, Some(rss)) if inside => {
                    return rss.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
                _ => {}
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn trim_gives_back_the_pages_below_and_the_stack_still_works() {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                record();
                let low = LOW.get();
                assert_ne!(low, 0);
                assert_eq!(go_deep(96), 96);
                let deep = resident_kib(low + 4096);
                trim();
                let after = resident_kib(low + 4096);
                assert!(
                    deep >= 96 && after + 64 <= deep,
                    "{deep} KiB, then {after} KiB"
                );
                // The pages come back, zeroed, when the stack grows there again.
                assert_eq!(go_deep(96), 96);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn trim_leaves_an_unrecorded_thread_alone() {
        std::thread::spawn(|| {
            trim();
            assert_eq!(go_deep(8), 8);
        })
        .join()
        .unwrap();
    }
}
