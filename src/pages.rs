//! Giving memory pages back to the kernel while keeping what holds them: a session thread's stack
//! below its frames (`stack`), and a session's RETR buffers once it has gone quiet. Pages given back
//! read as zeros when next touched, and cost nothing until then.

use nix::libc;

/// The page size, or `None` if the system will not say.
pub fn size() -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => Some(p as usize),
        _ => None,
    }
}

/// Gives back the whole pages inside `buf`'s allocation, keeping the allocation: its contents become
/// zeros (its length is kept, and zeros are valid octets). For scratch buffers, whose contents are
/// dead between uses. The partial pages at either end stay: they may hold another allocation's bytes.
pub fn release(buf: &mut Vec<u8>) {
    let start = buf.as_mut_ptr() as usize;
    // SAFETY: the range is `buf`'s own allocation, which we hold mutably: nothing else reads or
    // writes it, and anonymous memory given back reads as zeros, valid for `u8`.
    unsafe { give_back(start, start + buf.capacity()) }
}

/// Gives back the whole pages between the addresses `start` and `end` (the partial pages at either
/// end stay).
///
/// # Safety
/// The range must be private anonymous memory (heap, a thread's stack) whose contents nothing will
/// read again, and that no reference points into: its pages read as zeros when next touched.
pub unsafe fn give_back(start: usize, end: usize) {
    let Some(page) = size() else { return };
    let (low, high) = (start.next_multiple_of(page), end / page * page);
    if high > low {
        // SAFETY: as the caller promised, for a range within the one it gave.
        unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of `buf`'s whole pages, by mincore(2).
    fn resident(buf: &[u8]) -> usize {
        let page = size().unwrap();
        let start = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = (buf.as_ptr() as usize + buf.len()) / page * page;
        let mut vec = vec![0u8; (end - start) / page];
        // SAFETY: the range is inside `buf`'s allocation and page-aligned; `vec` has one octet per page.
        let ok =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(ok, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn released_pages_leave_memory_and_come_back_zeroed() {
        let mut buf = vec![7u8; 256 * 1024];
        let pages = resident(&buf);
        assert!(pages >= 60, "{pages}");
        release(&mut buf);
        assert!(resident(&buf) <= 1, "{}", resident(&buf));
        assert_eq!(buf.len(), 256 * 1024);
        let page = size().unwrap();
        let first_whole = (buf.as_ptr() as usize).next_multiple_of(page) - buf.as_ptr() as usize;
        assert_eq!(buf[first_whole], 0);
        buf.fill(1);
        assert!(buf.iter().all(|&b| b == 1));
    }
}
