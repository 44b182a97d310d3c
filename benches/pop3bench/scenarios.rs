//! The scenarios of the benchmark, each driven against one running server: login rate, RETR
//! throughput, idle-session memory, the big-maildrop listing and the big expunge. Every loop is bounded
//! in count and in time.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Client, Uids, bad};
use crate::machine;
use crate::mail::{Expected, Spec};
use crate::targets::Server;

/// How long a client waits for any one reply. Dovecot's first listing of 100,000 messages is slow.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs per measured figure and time per run.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    pub runs: usize,
    pub run_time: Duration,
}

/// A measured rate: the median over runs, and server CPU seconds per unit of work.
pub struct Rate {
    pub median: f64,
    pub cpu_per_unit: f64,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Runs `work` on `clients` threads against each of `servers` in turn, `effort.runs` runs each (after
/// one short warm-up each), alternating run by run: drift on a noisy machine then hits every server
/// alike, which matters for the ratios between them. `work(server, client)` returns the units it did
/// (logins, payload octets). Returns each server's units per second, in the order of `servers`; a
/// server that fails a run is left out of the later ones and gets its error, the others go on.
fn measure<F>(servers: &[&Server], clients: usize, effort: Effort, work: F) -> Vec<io::Result<Rate>>
where
    F: Fn(usize, usize) -> io::Result<u64> + Sync,
{
    let run = |server: usize, time: Duration| -> io::Result<(u64, f64)> {
        let start = Instant::now();
        let totals: Vec<io::Result<u64>> = thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let work = &work;
                    s.spawn(move || {
                        let mut units = 0u64;
                        // At least one unit each, at most 100,000 units: bounded whatever the server does.
                        for i in 0..100_000 {
                            if i > 0 && start.elapsed() >= time {
                                break;
                            }
                            units += work(server, c)?;
                        }
                        Ok(units)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(bad("client panicked"))))
                .collect()
        });
        let secs = start.elapsed().as_secs_f64();
        let mut sum = 0;
        for t in totals {
            sum += t?;
        }
        Ok((sum, secs))
    };
    let mut failed: Vec<Option<io::Error>> = servers.iter().map(|_| None).collect();
    for (server, failure) in failed.iter_mut().enumerate() {
        *failure = run(server, effort.run_time / 5).err();
    }
    let (mut rates, mut units, mut cpu) = (
        vec![Vec::new(); servers.len()],
        vec![0u64; servers.len()],
        vec![0f64; servers.len()],
    );
    for _ in 0..effort.runs {
        for (i, server) in servers.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let cpu0 = machine::cpu_seconds(server.pid());
            match run(i, effort.run_time) {
                Ok((n, secs)) => {
                    cpu[i] += machine::cpu_seconds(server.pid()) - cpu0;
                    units[i] += n;
                    rates[i].push(n as f64 / secs);
                }
                Err(e) => failed[i] = Some(e),
            }
        }
    }
    rates
        .into_iter()
        .zip(units.iter().zip(&cpu))
        .zip(failed)
        .map(|((rates, (&units, &cpu)), failure)| match failure {
            Some(e) => Err(e),
            None => Ok(Rate {
                median: median(rates),
                cpu_per_unit: cpu / units.max(1) as f64,
            }),
        })
        .collect()
}

/// login: connect, USER, PASS, STAT (checked against the maildrop: a server must have looked at
/// it), QUIT, against each of `servers` in turn. Logins per second.
pub fn login(
    servers: &[&Server],
    spec: &Spec,
    clients: usize,
    effort: Effort,
) -> io::Result<Vec<io::Result<Rate>>> {
    let want = Expected::of(spec).stat();
    sessions(servers, spec, clients, effort, |client| {
        client.stat_is(want)?;
        Ok(1)
    })
}

/// `measure` of whole sessions: each logs in to one of `spec`'s accounts, does `work` (which returns
/// the units it did), and quits.
fn sessions(
    servers: &[&Server],
    spec: &Spec,
    clients: usize,
    effort: Effort,
    work: impl Fn(&mut Client) -> io::Result<u64> + Sync,
) -> io::Result<Vec<io::Result<Rate>>> {
    let accounts = accounts_of(servers, spec, clients)?;
    Ok(measure(servers, clients, effort, |s, c| {
        let mut client = logged_in(servers[s], &accounts[s][c])?;
        let units = work(&mut client)?;
        client.quit()?;
        Ok(units)
    }))
}

/// A client connected to `server` and logged in as `account`.
fn logged_in(server: &Server, (user, pass): &(String, String)) -> io::Result<Client> {
    let mut client = Client::connect(server.addr, REPLY_TIMEOUT)?;
    client.allow_trailing_blank = server.keeps_mbox_separator();
    client.login(user, pass)?;
    Ok(client)
}

/// Each server's accounts for `clients` clients of `spec`.
fn accounts_of(
    servers: &[&Server],
    spec: &Spec,
    clients: usize,
) -> io::Result<Vec<Vec<(String, String)>>> {
    servers.iter().map(|s| s.accounts(spec, clients)).collect()
}

/// retr: LIST, then RETR of every message with every octet checked, QUIT, against each of `servers` in
/// turn. Payload octets per second.
pub fn retr(
    servers: &[&Server],
    spec: &Spec,
    expected: &Expected,
    clients: usize,
    effort: Effort,
) -> io::Result<Vec<io::Result<Rate>>> {
    sessions(servers, spec, clients, effort, |client| {
        client.list(expected)?;
        let mut buf = Vec::new();
        for (i, body) in expected.bodies.iter().enumerate() {
            client.retr(i + 1, body, &mut buf)?;
        }
        Ok(expected.payload())
    })
}

/// idle: `n` sessions logged in and held open. Server PSS growth per session, in KiB.
pub fn idle(server: &Server, spec: &Spec, n: usize) -> io::Result<f64> {
    let accounts = server.accounts(spec, n)?;
    thread::sleep(Duration::from_millis(300));
    let before = machine::pss_kib(server.pid());
    let mut open = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    for (user, pass) in &accounts {
        if Instant::now() > deadline {
            return Err(bad("idle: opening sessions took more than two minutes"));
        }
        let mut client = Client::connect(server.addr, Duration::from_secs(30))?;
        client.login(user, pass)?;
        client.stat()?;
        open.push(client);
    }
    thread::sleep(Duration::from_millis(500));
    let after = machine::pss_kib(server.pid());
    for client in open {
        let _ = client.quit();
    }
    // Let the server (and a process-per-session peer) wind the sessions down before the next scenario.
    thread::sleep(Duration::from_millis(500));
    Ok((after as f64 - before as f64) / n as f64)
}

/// bigdrop: seconds from connect to the end of a full UIDL listing, and the ids listed; checks the
/// message count, the numbering and form of every line, and (after the timing) that no id repeats.
pub fn list_time(server: &Server, spec: &Spec) -> io::Result<(f64, Uids)> {
    let account = server.account(spec, 0);
    let start = Instant::now();
    let mut client = logged_in(server, &account)?;
    let ids = client.uidl()?;
    let secs = start.elapsed().as_secs_f64();
    client.quit()?;
    if ids.len() != spec.count {
        return Err(bad(format!(
            "UIDL listed {} messages, want {}",
            ids.len(),
            spec.count
        )));
    }
    ids.check_unique()?;
    Ok((secs, ids))
}

/// expunge: DELE every odd-numbered message, then QUIT; seconds from QUIT to its reply. Then checks
/// what is left (`Client::check_kept`).
pub fn expunge(server: &Server, spec: &Spec) -> io::Result<f64> {
    let account = server.account(spec, 0);
    let mut client = logged_in(server, &account)?;
    let (n, _) = client.stat()?;
    if n as usize != spec.count {
        return Err(bad(format!("STAT: {n} messages, want {}", spec.count)));
    }
    client.dele_many((1..=spec.count).step_by(2))?;
    let start = Instant::now();
    client.quit()?;
    let secs = start.elapsed().as_secs_f64();
    let mut check = logged_in(server, &account)?;
    check.check_kept(spec)?;
    check.quit()?;
    Ok(secs)
}
