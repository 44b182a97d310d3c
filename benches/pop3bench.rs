//! pop3bench: the load generator behind `make bench` (issue 7). It builds fixtures (a passwd-file with
//! {PLAIN} users, Maildirs, mboxes) in a temporary directory, starts the release poplar on 127.0.0.1
//! port 0, and drives the scenarios: login, retr, idle, bigdrop, expunge, against poplar and each peer
//! named in `PEER` (dovecot, popa3d, or both: `PEER=dovecot,popa3d`), configured here on a loopback
//! port. login and retr also run against a trivial in-memory server (the ceiling), and alternate run
//! by run among all the servers; `PEER=reader` adds the trivial server reading each message's file
//! for RETR (the ceiling of a server that keeps mail in files). It prints one table, a column per
//! server, then checks the goals against the run's figures.
//!
//! Environment: `BENCH_SCENARIOS=login,retr,idle,bigdrop,expunge` (default all), `BENCH_QUICK=1`
//! (fewer runs, smaller big maildrops), `PEER=dovecot|popa3d|reader` or a list of them
//! (`PEER=dovecot,popa3d`), `POPLAR_BIN` (default
//! target/release/poplar), `BENCH_KEEP=1` (keep the temporary directories and server logs).
//! Loopback only; every loop is bounded in count and time.

#[path = "pop3bench/client.rs"]
mod client;
#[path = "pop3bench/goals.rs"]
mod goals;
#[path = "pop3bench/kind.rs"]
mod kind;
#[path = "pop3bench/machine.rs"]
mod machine;
#[path = "pop3bench/mail.rs"]
mod mail;
#[path = "pop3bench/report.rs"]
mod report;
#[path = "pop3bench/scenarios.rs"]
mod scenarios;
#[path = "pop3bench/targets.rs"]
mod targets;

use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use kind::Kind;
use mail::{Expected, Spec};
use report::{Table, row};
use scenarios::Effort;
use targets::{Format, Server};

const LOGIN: Spec = Spec {
    prefix: "login",
    count: 10,
    size: 2048,
    users: 8,
};
const R50K: Spec = Spec {
    prefix: "r50k",
    count: 100,
    size: 50 * 1024,
    users: 4,
};
const R1M: Spec = Spec {
    prefix: "r1m",
    count: 10,
    size: 1024 * 1024,
    users: 4,
};
const PROBE: Spec = Spec {
    prefix: "probe",
    count: 1,
    size: 200,
    users: 1,
};

struct Options {
    quick: bool,
    scenarios: Vec<String>,
    peers: Vec<Kind>,
    bin: PathBuf,
    effort: Effort,
    big: usize,
    idle: Vec<usize>,
}

impl Options {
    fn from_env() -> Result<Options, String> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let all = "login,retr,idle,bigdrop,expunge";
        let scenarios: Vec<String> = std::env::var("BENCH_SCENARIOS")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| all.to_string())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        if let Some(bad) = scenarios
            .iter()
            .find(|s| !all.split(',').any(|a| a == s.as_str()))
        {
            return Err(format!("unknown scenario {bad:?} (choose from {all})"));
        }
        let peers = kind::parse_peers(&std::env::var("PEER").unwrap_or_default())?;
        let bin = std::env::var_os("POPLAR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/poplar"));
        let effort = if quick {
            Effort {
                runs: 3,
                run_time: Duration::from_millis(500),
            }
        } else {
            Effort {
                runs: 5,
                run_time: Duration::from_secs(1),
            }
        };
        let big = if quick { 20_000 } else { 100_000 };
        let idle = if quick { vec![200] } else { vec![200, 1000] };
        Ok(Options {
            quick,
            scenarios,
            peers,
            bin,
            effort,
            big,
            idle,
        })
    }

    fn wants(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }

    fn big_maildir(&self) -> Spec {
        Spec {
            prefix: "bigmd",
            count: self.big,
            size: 1000,
            users: 1,
        }
    }
    fn big_mbox(&self) -> Spec {
        Spec {
            prefix: "bigmb",
            count: self.big,
            size: 1000,
            users: 1,
        }
    }
    fn expunge_mbox(&self) -> Spec {
        Spec {
            prefix: "exp",
            count: self.big,
            size: 1000,
            users: 1,
        }
    }
    fn idle_spec(&self) -> Spec {
        Spec {
            prefix: "idle",
            count: 2,
            size: 1000,
            users: self.idle.iter().copied().max().unwrap_or(0),
        }
    }
}

fn main() {
    match std::env::var(targets::ROLE).as_deref() {
        Ok("trivial") => {
            let drops: Vec<(Spec, Expected)> = [LOGIN, R50K, R1M]
                .iter()
                .map(|s| (*s, Expected::of(s)))
                .collect();
            exit_on_error(targets::run_trivial(Vec::leak(drops)));
            return;
        }
        Ok("inetd") => {
            exit_on_error(targets::run_inetd());
            return;
        }
        _ => {}
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and a
    // benchmark of several minutes has no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pop3bench: not a test; run it with `make bench` (cargo bench --bench pop3bench)");
        return;
    }
    let opts = match Options::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pop3bench: {e}");
            std::process::exit(2);
        }
    };
    if !opts.bin.exists() {
        eprintln!(
            "pop3bench: {} not found: run `make bench` (it builds the release binary first)",
            opts.bin.display()
        );
        std::process::exit(2);
    }
    exit_on_error(run(&opts));
}

fn exit_on_error(r: io::Result<()>) {
    if let Err(e) = r {
        eprintln!("pop3bench: {e}");
        std::process::exit(1);
    }
}

fn run(opts: &Options) -> io::Result<()> {
    let nofile = machine::raise_nofile(8192);
    let scratch = tempfile::tempdir()?;
    let mut table = Table::default();
    if nofile < 2 * opts.idle_spec().users as u64 + 100 {
        table.note(format!(
            "descriptor limit {nofile}: too low for the idle scenario"
        ));
    }
    println!(
        "pop3bench: {} run(s) of {:?} per figure{}",
        opts.effort.runs,
        opts.effort.run_time,
        if opts.quick { " (quick)" } else { "" }
    );
    let lo = machine::loopback_mb_s(Duration::from_secs(1))?;
    let pc = machine::page_cache_mb_s(scratch.path(), Duration::from_secs(1))?;
    println!(
        "ceilings: loopback TCP {lo:.0} MB/s (one sender, 64 KiB writes); page-cache reads {pc:.0} MB/s (64 KiB reads)"
    );
    // The reader is no target of its own: it reads the first target's Maildirs.
    let mut kinds = vec![Kind::Poplar];
    kinds.extend(opts.peers.iter().filter(|&&k| k != Kind::Reader));
    let mut targets = Vec::new();
    for kind in kinds {
        match Target::set_up(opts, kind) {
            Ok(target) => targets.push(target),
            Err(e) => table.fail(kind, format!("stopped: {e}")),
        }
    }
    let fixtures_written = Instant::now();
    // Every server's Maildir scenarios: login and retr alternate run by run among all of them and the
    // trivial ceiling, so that their ratios see the same machine (its speed drifts by more than the
    // goals' margins from one minute to the next); the others run one server after the other.
    let mut servers = Vec::new();
    for target in &targets {
        match target.start(opts, Format::Maildir) {
            Ok(server) => {
                eprintln!("pop3bench: {} on {}", target.kind.name(), server.addr);
                servers.push(server);
            }
            Err(e) => table.fail(target.kind, format!("stopped: {e}")),
        }
    }
    if let (Some(first), true) = (targets.first(), opts.wants("login") || opts.wants("retr")) {
        let reader = if opts.peers.contains(&Kind::Reader) {
            match targets::reader(first.dir.path()) {
                Ok(reader) => {
                    eprintln!("pop3bench: reader on {}", reader.addr);
                    Some(reader)
                }
                Err(e) => {
                    table.note(format!("reader: not started: {e}"));
                    None
                }
            }
        } else {
            None
        };
        match targets::trivial(first.dir.path()) {
            Ok(trivial) => {
                eprintln!("pop3bench: trivial on {}", trivial.addr);
                let all: Vec<&Server> = servers.iter().chain(&reader).chain([&trivial]).collect();
                alternated_scenarios(opts, &all, &mut table);
            }
            Err(e) => table.note(format!("trivial: not started: {e}")),
        }
    }
    for server in &servers {
        own_maildir_scenarios(opts, server, fixtures_written, &mut table);
    }
    drop(servers);
    if opts.wants("bigdrop") || opts.wants("expunge") {
        let mut mbox_servers = Vec::new();
        for target in &targets {
            match target.start_mbox(opts, &mut table) {
                Ok(Some(server)) => mbox_servers.push((server, target.dir.path())),
                Ok(None) => {}
                Err(e) => table.fail(target.kind, format!("stopped: {e}")),
            }
        }
        if opts.wants("bigdrop") {
            alternated_big_mbox(opts, &mut mbox_servers, &mut table);
        }
        if opts.wants("expunge") {
            alternated_expunge(opts, &mbox_servers, &mut table);
        }
    }
    println!();
    print!("{}", table.render(&opts.peers));
    let scope = goals::Scope {
        scenarios: &opts.scenarios,
        peers: &opts.peers,
        big: opts.big,
        idle: opts.idle.iter().copied().max().unwrap_or(0),
    };
    print!("{}", goals::render(&goals::check(&table, &scope), &scope));
    print!("{}", goals::reader_context(&table));
    if table.failed(Kind::Poplar) {
        // A check poplar failed (a wrong octet, a wrong count, a crash) fails the bench, whatever
        // the figures of the other scenarios.
        return Err(io::Error::other(
            "poplar failed a check of this run (see the notes above)",
        ));
    }
    Ok(())
}

/// One server under test: its kind and its fixtures, in a directory of its own.
struct Target {
    kind: Kind,
    dir: tempfile::TempDir,
    /// popa3d's binary, unpacked from the Debian package.
    popa3d_bin: Option<PathBuf>,
}

impl Target {
    /// Builds `kind`'s fixtures in a fresh directory.
    fn set_up(opts: &Options, kind: Kind) -> io::Result<Target> {
        let mut dir = tempfile::Builder::new().prefix("pop3bench-").tempdir()?;
        // BENCH_KEEP=1 leaves the fixtures, configurations and server logs behind for a look.
        dir.disable_cleanup(std::env::var_os("BENCH_KEEP").is_some());
        let root = dir.path();
        // Dovecot's unprivileged login processes must reach their sockets under the base_dir.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        eprintln!(
            "pop3bench: {}: building fixtures in {}",
            kind.name(),
            root.display()
        );
        let popa3d_bin = match kind {
            Kind::Poplar | Kind::Dovecot => {
                build_fixtures(opts, root)?;
                None
            }
            Kind::Popa3d => Some(targets::popa3d_setup(root)?),
            Kind::Trivial | Kind::Reader => None,
        };
        Ok(Target {
            kind,
            dir,
            popa3d_bin,
        })
    }

    fn start(&self, opts: &Options, format: Format) -> io::Result<Server> {
        let root = self.dir.path();
        match (self.kind, &self.popa3d_bin) {
            (Kind::Poplar, _) => targets::poplar(&opts.bin, root, format),
            (Kind::Dovecot, _) => targets::dovecot(root, format),
            (Kind::Popa3d, Some(bin)) => targets::popa3d(root, bin),
            // Both run beside the targets, on the first target's fixtures (see `run`).
            (Kind::Trivial | Kind::Reader, _) => Err(io::Error::other(format!(
                "{} is no target of its own",
                self.kind.name()
            ))),
            (Kind::Popa3d, None) => Err(io::Error::other("popa3d is not set up")),
        }
    }

    /// A server on this target's mbox fixtures, for bigdrop and expunge; `None` (noted) when it serves
    /// no mbox maildrops.
    fn start_mbox(&self, opts: &Options, table: &mut Table) -> io::Result<Option<Server>> {
        let server = self.start(opts, Format::Mbox)?;
        if let Err(e) = probe(&server) {
            table.fail(
                self.kind,
                format!("mbox scenarios skipped: mbox maildrops unsupported ({e})"),
            );
            return Ok(None);
        }
        Ok(Some(server))
    }
}

fn build_fixtures(opts: &Options, root: &Path) -> io::Result<()> {
    let mut specs = vec![PROBE];
    let mut maildirs = Vec::new();
    let mut mboxes = vec![PROBE];
    if opts.wants("login") {
        maildirs.push(LOGIN);
    }
    if opts.wants("retr") {
        maildirs.extend([R50K, R1M]);
    }
    if opts.wants("idle") {
        maildirs.push(opts.idle_spec());
    }
    if opts.wants("bigdrop") {
        maildirs.push(opts.big_maildir());
        mboxes.push(opts.big_mbox());
    }
    if opts.wants("expunge") {
        mboxes.push(opts.expunge_mbox());
    }
    for s in &maildirs {
        mail::write_maildirs(root, s)?;
    }
    for s in &mboxes {
        mail::write_mboxes(root, s)?;
    }
    specs.extend(maildirs);
    specs.extend(mboxes.into_iter().skip(1));
    mail::write_passwd(root, &specs)?;
    give_to_users(&root.join("home"))
}

/// The maildrops belong to their users, as on a real host (Dovecot's mail processes run as them).
fn give_to_users(dir: &Path) -> io::Result<()> {
    let owner = format!("{}:{}", mail::UID, mail::UID);
    let chowned = std::process::Command::new("chown")
        .args(["-R", &owner])
        .arg(dir)
        .status()?;
    if chowned.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "chown of {} failed (the bench runs as root)",
            dir.display()
        )))
    }
}

/// One login to a one-message mbox: does this server serve mbox maildrops at all?
fn probe(server: &Server) -> io::Result<()> {
    let accounts = server.accounts(&PROBE, 1)?;
    let mut c = client::Client::connect(server.addr, Duration::from_secs(30))?;
    c.login(&accounts[0].0, &accounts[0].1)?;
    c.stat()?;
    c.quit()
}

/// login and retr against every server in `servers`, alternating run by run among them.
fn alternated_scenarios(opts: &Options, servers: &[&Server], table: &mut Table) {
    if opts.wants("login") {
        for clients in [1, 8] {
            let rates = scenarios::login(servers, &LOGIN, clients, opts.effort);
            record_rates(table, servers, "login", rates, |table, kind, rate| {
                table.record(&row::login(clients), kind, rate.median);
                table.record(&row::login_cpu(clients), kind, rate.cpu_per_unit * 1e3);
            });
        }
    }
    if opts.wants("retr") {
        for spec in [R50K, R1M] {
            let expected = Expected::of(&spec);
            let name = if spec.size < 1 << 20 {
                row::RETR_50K
            } else {
                row::RETR_1M
            };
            for clients in [1, 4] {
                let rates = scenarios::retr(servers, &spec, &expected, clients, opts.effort);
                record_rates(table, servers, "retr", rates, |table, kind, rate| {
                    table.record(&row::retr(name, clients), kind, rate.median / 1e6);
                    table.record(&row::retr_cpu(name, clients), kind, rate.cpu_per_unit * 1e9);
                });
            }
        }
    }
}

/// Records each server's rate with `record`, or notes why it has none.
fn record_rates(
    table: &mut Table,
    servers: &[&Server],
    what: &str,
    rates: io::Result<Vec<io::Result<scenarios::Rate>>>,
    record: impl Fn(&mut Table, Kind, &scenarios::Rate),
) {
    match rates {
        Ok(rates) => {
            for (server, rate) in servers.iter().zip(rates) {
                match rate {
                    Ok(rate) => record(table, server.kind, &rate),
                    Err(e) => table.fail(server.kind, format!("{what}: {e}")),
                }
            }
        }
        Err(e) => table.note(format!("{what}: {e}")),
    }
}

/// The Maildir scenarios that run against one server at a time: idle and bigdrop.
fn own_maildir_scenarios(
    opts: &Options,
    server: &Server,
    fixtures_written: Instant,
    table: &mut Table,
) {
    let kind = server.kind;
    let attempt = |table: &mut Table, what: &str, r: io::Result<()>| {
        if let Err(e) = r {
            table.fail(kind, format!("{what}: {e}"));
        }
    };
    if opts.wants("idle") {
        for &n in &opts.idle {
            let r = scenarios::idle(server, &opts.idle_spec(), n)
                .map(|kib| table.record(&row::idle(n), kind, kib));
            attempt(table, "idle", r);
        }
    }
    if opts.wants("bigdrop") && kind != Kind::Popa3d {
        let spec = opts.big_maildir();
        // As for mbox (`SETTLE`): mail delivered a moment ago, not this very second. A Maildir whose
        // directories changed in the last two seconds of the clock cannot have their stamps cached
        // (see `src/maildrop/cache.rs`), and a bigdrop-only run comes right after the fixtures.
        thread::sleep(
            (fixtures_written + MAILDIR_SETTLE).saturating_duration_since(Instant::now()),
        );
        let r = big_listing(server, &spec, "Maildir", table);
        attempt(table, "bigdrop Maildir", r);
    }
}

/// bigdrop on mbox against every server in `servers`: first logins run by run in turn (as login and
/// retr alternate), each on a freshly written copy with no index of it; then each server's later
/// logins. A server that fails leaves `servers` (its expunge would not mean much).
fn alternated_big_mbox(opts: &Options, servers: &mut Vec<(Server, &Path)>, table: &mut Table) {
    let spec = opts.big_mbox();
    let mut firsts: Vec<Option<(Vec<f64>, client::Uids)>> =
        servers.iter().map(|_| Some(Default::default())).collect();
    for run in 0..FIRST_LOGINS {
        for ((server, root), done) in servers.iter().zip(&mut firsts) {
            let Some((times, ids)) = done else { continue };
            let first = || {
                fresh_mbox(server, root, &spec, run)?;
                // Mail delivered a moment ago, not this very second: popa3d waits out the second in
                // which its spool was written (measured: 1.1 s first logins right after a refill,
                // 0.1 s later).
                thread::sleep(SETTLE);
                scenarios::list_time(server, &spec)
            };
            match first() {
                Ok((secs, listed)) => {
                    times.push(secs);
                    *ids = listed;
                }
                Err(e) => {
                    table.fail(server.kind, format!("stopped: bigdrop mbox: {e}"));
                    *done = None;
                }
            }
        }
    }
    let mut kept = Vec::with_capacity(servers.len());
    for ((server, root), done) in servers.drain(..).zip(firsts) {
        let Some((times, ids)) = done else { continue };
        table.record(
            &row::big_first("mbox", spec.count),
            server.kind,
            scenarios::median(times),
        );
        match later_listings(&server, &spec, "mbox", &ids, table) {
            Ok(()) => kept.push((server, root)),
            Err(e) => table.fail(server.kind, format!("stopped: bigdrop mbox: {e}")),
        }
    }
    *servers = kept;
}

/// expunge against every server in `servers`, run by run in turn (as login and retr alternate), each
/// run on a fresh copy of the mbox: an expunge's fsyncs wait for whatever else the file system has to
/// write, which drifts over a run, so runs minutes apart would compare the machine, not the servers.
fn alternated_expunge(opts: &Options, servers: &[(Server, &Path)], table: &mut Table) {
    let spec = opts.expunge_mbox();
    let mut times: Vec<Option<Vec<f64>>> = vec![Some(Vec::new()); servers.len()];
    for run in 0..EXPUNGE_RUNS {
        for ((server, root), times) in servers.iter().zip(&mut times) {
            let Some(done) = times else { continue };
            let timed = || {
                fresh_mbox(server, root, &spec, run)?;
                scenarios::expunge(server, &spec)
            };
            match timed() {
                Ok(secs) => done.push(secs),
                Err(e) => {
                    table.fail(server.kind, format!("expunge: {e}"));
                    *times = None;
                }
            }
        }
    }
    for ((server, _), times) in servers.iter().zip(times) {
        if let Some(times) = times {
            let secs = scenarios::median(times);
            table.record(&row::expunge(spec.count), server.kind, secs);
        }
    }
}

/// Each expunge destroys its mbox, so the figure is the median of this many runs on fresh copies.
const EXPUNGE_RUNS: usize = 3;
/// First logins to a big mbox, each on a fresh copy (see `big_listing`).
const FIRST_LOGINS: usize = 3;
/// How old the Maildir fixtures are, at least, when bigdrop's first login comes: more than poplar's
/// two whole seconds of directory stamps that cannot be cached yet.
const MAILDIR_SETTLE: Duration = Duration::from_millis(3100);
/// How old a freshly written mbox is when the first login comes.
const SETTLE: Duration = Duration::from_millis(1100);

/// `spec`'s mbox for run `run` of a scenario: written for the first run, afresh for the others, then
/// synced. Fixtures just written (and those of earlier scenarios) are still dirty in the page cache:
/// an expunge's first fsync would write them out too, by however much each server's fixtures amount
/// to, and a first login would compete with their writeback. Each run starts with nothing else to
/// write.
fn fresh_mbox(server: &Server, root: &Path, spec: &Spec, run: usize) -> io::Result<()> {
    if run == 0 {
        server.fill_spool(spec)?;
    } else {
        refill_mbox(server, root, spec)?;
    }
    nix::unistd::sync();
    Ok(())
}

/// Writes `spec`'s mbox afresh for its first user, as before the first run: the spool for popa3d;
/// otherwise the inbox, with poplar's index and Dovecot's index directory gone and the files the
/// user's.
fn refill_mbox(server: &Server, root: &Path, spec: &Spec) -> io::Result<()> {
    if server.kind == Kind::Popa3d {
        return server.fill_spool(spec);
    }
    let home = mail::home(root, &server.account(spec, 0).0);
    let _ = std::fs::remove_file(home.join("inbox.poplar.index"));
    let _ = std::fs::remove_dir_all(home.join("mail"));
    std::fs::create_dir_all(home.join("mail"))?;
    mail::write_mbox(&home.join("inbox"), spec)?;
    give_to_users(&home)
}

/// First login to the end of UIDL, then the median of three more. `format` names the maildrop's.
fn big_listing(server: &Server, spec: &Spec, format: &str, table: &mut Table) -> io::Result<()> {
    let (secs, ids) = scenarios::list_time(server, spec)?;
    table.record(&row::big_first(format, spec.count), server.kind, secs);
    later_listings(server, spec, format, &ids, table)
}

/// The median of three logins to the end of UIDL after the first, which listed `ids`.
fn later_listings(
    server: &Server,
    spec: &Spec,
    format: &str,
    ids: &client::Uids,
    table: &mut Table,
) -> io::Result<()> {
    let mut again = Vec::new();
    for _ in 0..3 {
        let (secs, later) = scenarios::list_time(server, spec)?;
        // Unique-ids persist across sessions (RFC 1939): a later login must list the same ones.
        if &later != ids {
            return Err(io::Error::other(format!(
                "bigdrop {format}: a later UIDL listed other unique-ids than the first"
            )));
        }
        again.push(secs);
    }
    table.record(
        &row::big_later(format, spec.count),
        server.kind,
        scenarios::median(again),
    );
    Ok(())
}
