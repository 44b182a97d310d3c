//! Linux capabilities: what a server running as root keeps of root's powers. Once its listeners are bound
//! (standalone) or before it reads the client (inetd), it needs only three: CAP_SETUID and CAP_SETGID to
//! take on each account's identity (`privs`), and CAP_DAC_READ_SEARCH to read the passwd-file,
//! /etc/shadow (mode 0 on some systems) and the TLS key, again on SIGHUP, whoever owns them. Everything
//! else root could do — bypass write permissions, load modules, mount, trace processes, bind other
//! ports — is dropped, so a flaw in a session cannot use it.
//!
//! Capabilities belong to threads, and a new thread starts with its creator's: dropped in the main thread
//! before any other is started, they are dropped for all. A session thread whose file-system uid is an
//! account's also loses CAP_DAC_READ_SEARCH from its effective set (the kernel clears it with the fsuid
//! switch), so its file access is exactly the account's.

use nix::errno::Errno;
use nix::libc;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// The capabilities kept, as a mask of capability numbers.
pub const KEPT: u64 = 1 << CAP_DAC_READ_SEARCH | 1 << CAP_SETGID | 1 << CAP_SETUID;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit halves.
const VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct` of <linux/capability.h>.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's permitted set.
pub fn permitted() -> Result<u64, Errno> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2) with a version 3 header writes two `Data` structs, which `data` holds.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32)
}

/// Drops every capability but [`KEPT`] from the calling thread's effective, permitted and inheritable
/// sets and, where the thread may (CAP_SETPCAP), empties its bounding set. Capabilities it does not hold
/// are not asked for (a unit file may have taken some away).
pub fn keep_only_needed() -> Result<(), String> {
    // The bounding set first, emptied: dropping from it needs CAP_SETPCAP, which goes with the rest
    // below, and it limits only what an execve could gain, not the sets kept here.
    empty_bounding_set();
    let keep = permitted().map_err(|e| format!("capget: {e}"))? & KEPT;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let half = |bits: u64| Data {
        effective: bits as u32,
        permitted: bits as u32,
        inheritable: 0,
    };
    let data = [half(keep), half(keep >> 32)];
    // SAFETY: capset(2) with a version 3 header reads two `Data` structs, which `data` holds.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", Errno::last()));
    }
    Ok(())
}

/// Empties the calling thread's bounding set, as far as it may (CAP_SETPCAP). The set matters only
/// across execve, which poplar never calls, so being refused is no failure.
pub fn empty_bounding_set() {
    for cap in 0..=last_capability() {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            log::debug!("capability bounding set unchanged: {}", Errno::last());
            break;
        }
    }
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`); 63 when it cannot
/// be read, and the drops past the kernel's last then fail harmlessly.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(63, |n: u32| n.min(63))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a thread of its own (capabilities are per thread), so the test process keeps its own.
    #[test]
    fn a_root_thread_keeps_exactly_the_three() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED a_root_thread_keeps_exactly_the_three: needs root");
            return;
        }
        let before = permitted().unwrap();
        let after = std::thread::spawn(|| {
            keep_only_needed().unwrap();
            permitted().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after, before & KEPT, "before {before:#x}");
        assert_eq!(permitted().unwrap(), before, "other threads keep theirs");
    }
}
