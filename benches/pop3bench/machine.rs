//! What the machine says: CPU time and PSS of a server's process tree from /proc, the descriptor limit,
//! and the ceilings that put the figures in context (loopback TCP, page-cache reads).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// USER_HZ: the unit of /proc/PID/stat times; 100 on every Linux architecture that matters here.
const CLOCK_TICKS: f64 = 100.0;

/// (ppid, utime+stime+cutime+cstime in ticks) of one process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    Some((n(1) as u32, n(11) + n(12) + n(13) + n(14)))
}

/// `root` and every live descendant.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some((ppid, _)) = stat(pid) {
                    parents.insert(pid, ppid);
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// CPU seconds used by the tree so far, including its reaped children (cutime/cstime: a live process's
/// own children are counted only once they are waited for, so nothing is counted twice).
pub fn cpu_seconds(root: u32) -> f64 {
    tree(root)
        .iter()
        .filter_map(|&p| stat(p))
        .map(|(_, t)| t as f64 / CLOCK_TICKS)
        .sum()
}

/// Proportional set size of the tree in KiB, from /proc/PID/smaps_rollup.
pub fn pss_kib(root: u32) -> u64 {
    tree(root).iter().map(|&p| pss_of(p).unwrap_or(0)).sum()
}

fn pss_of(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Raises the soft descriptor limit to at least `want` (up to the hard limit); returns the result.
pub fn raise_nofile(want: u64) -> u64 {
    use nix::libc::{RLIMIT_NOFILE, getrlimit, rlimit, setrlimit};
    let mut lim = rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let raised = rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if setrlimit(RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Loopback TCP throughput of a trivial sender (64 KiB writes) in MB/s, over about `time`.
pub fn loopback_mb_s(time: Duration) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let buf = vec![b'x'; 64 * 1024];
        let start = Instant::now();
        while start.elapsed() < time {
            for _ in 0..64 {
                s.write_all(&buf)?;
            }
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 256 * 1024];
    let (start, mut total) = (Instant::now(), 0u64);
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    Ok(total as f64 / secs / 1e6)
}

/// Page-cache read bandwidth in MB/s: a 64 MiB file read with 64 KiB reads after a warming pass.
pub fn page_cache_mb_s(dir: &Path, time: Duration) -> io::Result<f64> {
    let path = dir.join("pagecache.bin");
    let chunk = vec![b'y'; 1 << 20];
    let mut f = File::create(&path)?;
    for _ in 0..64 {
        f.write_all(&chunk)?;
    }
    drop(f);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read_all = || -> io::Result<u64> {
        let mut f = File::open(&path)?;
        let mut n = 0u64;
        loop {
            match f.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    };
    read_all()?;
    let (start, mut total) = (Instant::now(), 0u64);
    while start.elapsed() < time && total < 64 << 30 {
        total += read_all()?;
    }
    let mb_s = total as f64 / start.elapsed().as_secs_f64() / 1e6;
    fs::remove_file(&path)?;
    Ok(mb_s)
}
