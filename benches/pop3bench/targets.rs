//! The servers under test, each a process tree on a loopback port: poplar (the release binary), the
//! trivial in-memory server (this binary re-run in the `trivial` role), Dovecot (configured here in a
//! temporary directory) and popa3d (the Debian binary under this binary's inetd-style spawner).

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::bad;
use crate::kind::Kind;
use crate::mail::{self, Expected, PASSWORD, Spec};

/// Environment variable that makes this binary a helper server instead of the bench.
pub const ROLE: &str = "POP3BENCH_ROLE";

/// The Unix account popa3d authenticates (system users only).
pub const POPA3D_USER: &str = "pop3bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Maildir,
    Mbox,
}

/// A running server. Dropping it stops it.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    /// popa3d serves one system user's /var/mail file: fixtures are written there per scenario.
    spool: Option<PathBuf>,
}

impl Server {
    /// The root of the process tree whose CPU and memory are measured.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Accounts to log in with for `drop`, one per client. popa3d has one system user whose spool
    /// file is rewritten here; the others have `drop.users` accounts prepared before they started.
    pub fn accounts(&self, drop: &Spec, clients: usize) -> io::Result<Vec<(String, String)>> {
        self.fill_spool(drop)?;
        if self.spool.is_none() && clients > drop.users {
            return Err(bad(format!(
                "{} has {} users, {clients} wanted",
                drop.prefix, drop.users
            )));
        }
        Ok((0..clients).map(|u| self.account(drop, u)).collect())
    }

    /// Account `u` of `drop`, without touching any file.
    pub fn account(&self, drop: &Spec, u: usize) -> (String, String) {
        match self.spool {
            Some(_) => (POPA3D_USER.to_string(), PASSWORD.to_string()),
            None => (format!("{}{u}", drop.prefix), PASSWORD.to_string()),
        }
    }

    /// popa3d: writes `drop` (one maildrop) into the system user's spool file.
    pub fn fill_spool(&self, drop: &Spec) -> io::Result<()> {
        match &self.spool {
            Some(spool) => {
                mail::write_mbox(spool, drop)?;
                // popa3d opens the spool read-write as the user, like a mail reader would.
                let user = nix::unistd::User::from_name(POPA3D_USER)
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad("no popa3d user"))?;
                nix::unistd::chown(spool, Some(user.uid), Some(user.gid))
                    .map_err(io::Error::from)?;
                fs::set_permissions(spool, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            }
            None => Ok(()),
        }
    }

    /// popa3d keeps the mbox separator line as part of each message.
    pub fn keeps_mbox_separator(&self) -> bool {
        self.kind == Kind::Popa3d
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `log` has a line `listening on ADDR` (poplar's and the helpers' start-up line).
fn learn_addr(child: &mut Child, log: &Path) -> io::Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let text = fs::read_to_string(log).unwrap_or_default();
        // Whole lines only: stderr is unbuffered, and a line may be read while half written (seen:
        // "bad address" from a popa3d spawner's line cut after `listening on 127.0`).
        let mut whole_lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        if let Some(addr) = whole_lines.find_map(|l| l.split("listening on ").nth(1)) {
            return addr
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad address in {}", log.display())));
        }
        if let Some(status) = child.try_wait()? {
            return Err(bad(format!("server exited ({status}): {}", text.trim())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(bad(format!("no `listening on` line in {}", log.display())))
}

/// Starts the release poplar on 127.0.0.1 port 0 with the passwd-file and mail location under `root`.
pub fn poplar(bin: &Path, root: &Path, format: Format) -> io::Result<Server> {
    let log = root.join(format!("poplar-{format:?}.log"));
    let mail = match format {
        Format::Maildir => "maildir:%h/Maildir",
        Format::Mbox => "mbox:%h/inbox",
    };
    let mut command = Command::new(bin);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--mail",
            mail,
            "--timeout",
            "600",
            "--log-level",
            "info",
        ])
        .args(["--max-sessions", "5000", "--max-per-ip", "5000"])
        .arg("--passwd")
        .arg(root.join("passwd"));
    spawn(Kind::Poplar, &mut command, &log, None)
}

/// Starts `command` with its stderr in `log`, where it says which address it listens on.
fn spawn(
    kind: Kind,
    command: &mut Command,
    log: &Path,
    spool: Option<PathBuf>,
) -> io::Result<Server> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log)?)
        .spawn()?;
    let addr = learn_addr(&mut child, log)?;
    Ok(Server {
        kind,
        addr,
        child,
        spool,
    })
}

/// Starts this binary in the trivial-server role.
pub fn trivial(root: &Path) -> io::Result<Server> {
    let log = root.join("trivial.log");
    let mut command = Command::new(std::env::current_exe()?);
    command.env(ROLE, "trivial");
    spawn(Kind::Trivial, &mut command, &log, None)
}

/// Starts the trivial server reading, for each RETR, the message's file in the Maildirs under `root`
/// (written by `mail::write_maildirs`).
pub fn reader(root: &Path) -> io::Result<Server> {
    let log = root.join("reader.log");
    let mut command = Command::new(std::env::current_exe()?);
    command.env(ROLE, "trivial").env(READ_ROOT, root);
    spawn(Kind::Reader, &mut command, &log, None)
}

/// In the trivial role: the directory whose users' Maildirs RETR reads (the reader).
const READ_ROOT: &str = "POP3BENCH_READ";

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts on `addr`.
fn wait_listening(child: &mut Child, addr: SocketAddr, log: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(bad(format!("exited ({status}): {}", text.trim())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(bad(format!("nothing listens on {addr}")))
}

/// Installs a Debian package with apt-get when `probe` is not there (root only).
pub fn ensure_package(probe: &str, package: &str) -> io::Result<()> {
    if Path::new(probe).exists() {
        return Ok(());
    }
    eprintln!("pop3bench: installing {package} with apt-get");
    let apt_get = |args: &[&str]| -> io::Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()?
            .success())
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    // A machine's package lists may be older than the mirror (the .deb they name is gone): refresh them
    // once and try again.
    let ok = apt_get(&install)? || (apt_get(&["update", "-q"])? && apt_get(&install)?);
    if ok && Path::new(probe).exists() {
        Ok(())
    } else {
        Err(bad(format!("cannot install {package}")))
    }
}

/// Starts Dovecot in the foreground with a minimal configuration in `root`: passwd-file users with
/// {PLAIN} passwords, plaintext logins, no TLS, one loopback listener, everything under `root`.
pub fn dovecot(root: &Path, format: Format) -> io::Result<Server> {
    ensure_package("/usr/sbin/dovecot", "dovecot-pop3d")?;
    let dir = root.join(format!("dovecot-{format:?}"));
    fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mail = match format {
        Format::Maildir => "maildir:~/Maildir",
        Format::Mbox => "mbox:~/mail:INBOX=~/inbox",
    };
    let log = dir.join("dovecot.log");
    let conf = format!(
        "protocols = pop3\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
         log_path = {l}\ninfo_log_path = {l}\nssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain\n\
         first_valid_uid = 0\nmail_location = {mail}\n\
         default_process_limit = 1500\ndefault_client_limit = 3000\nmail_max_userip_connections = 5000\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {p}\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = {p}\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
        d = dir.display(),
        l = log.display(),
        p = root.join("passwd").display(),
    );
    let conf_path = dir.join("dovecot.conf");
    fs::write(&conf_path, conf)?;
    let mut child = Command::new("/usr/sbin/dovecot")
        .arg("-F")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr.log"))?)
        .spawn()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(&mut child, addr, &dir.join("stderr.log"))?;
    Ok(Server {
        kind: Kind::Dovecot,
        addr,
        child,
        spool: None,
    })
}

/// Prepares popa3d: the Debian package unpacked into `root`, its `popa3d` user and chroot directory,
/// and a system user with a password for it to authenticate. Needs root. Returns the binary.
pub fn popa3d_setup(root: &Path) -> io::Result<PathBuf> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(bad(
            "popa3d authenticates system users: the bench must run as root to create one",
        ));
    }
    let unpack = root.join("popa3d-pkg");
    fs::create_dir_all(&unpack)?;
    let run = |cmd: &mut Command| -> io::Result<()> {
        let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(bad(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    };
    let download = || {
        run(Command::new("apt-get")
            .args(["download", "-q", "popa3d"])
            .current_dir(&unpack))
    };
    // As for `ensure_package`: stale package lists are refreshed once.
    download().or_else(|_| {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        download()
    })?;
    let deb = fs::read_dir(&unpack)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| bad("apt-get download popa3d gave no .deb"))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    // What the package's postinst would do: the privilege-separation user and its empty chroot.
    if nix::unistd::User::from_name("popa3d")
        .ok()
        .flatten()
        .is_none()
    {
        run(Command::new("useradd").args([
            "--system",
            "--home-dir",
            "/var/lib/popa3d",
            "--shell",
            "/usr/sbin/nologin",
            "popa3d",
        ]))?;
    }
    fs::create_dir_all("/var/lib/popa3d")?;
    if nix::unistd::User::from_name(POPA3D_USER)
        .ok()
        .flatten()
        .is_none()
    {
        run(Command::new("useradd").args([
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            POPA3D_USER,
        ]))?;
    }
    let mut chpasswd = Command::new("chpasswd")
        .args(["-c", "SHA512"])
        .stdin(Stdio::piped())
        .spawn()?;
    chpasswd
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{POPA3D_USER}:{PASSWORD}\n").as_bytes())?;
    if !chpasswd.wait()?.success() {
        return Err(bad("chpasswd failed"));
    }
    Ok(unpack.join("usr/sbin/popa3d"))
}

/// Starts the inetd-style spawner (this binary in the `inetd` role) running `popa3d` per connection.
pub fn popa3d(root: &Path, bin: &Path) -> io::Result<Server> {
    let log = root.join("spawner.log");
    let mut command = Command::new(std::env::current_exe()?);
    command.env(ROLE, "inetd").env("POP3BENCH_EXEC", bin);
    let spool = PathBuf::from("/var/mail").join(POPA3D_USER);
    spawn(Kind::Popa3d, &mut command, &log, Some(spool))
}

/// The `inetd` role: accept on loopback, give each connection to a fresh `POP3BENCH_EXEC` process on
/// fd 0/1 (as inetd's `nowait` does), reap the children. TCP_NODELAY is set on the socket, which popa3d
/// does not do itself: without it Nagle and delayed ACKs cap it near 5 MB/s, which would flatter poplar.
pub fn run_inetd() -> io::Result<()> {
    let exec = std::env::var_os("POP3BENCH_EXEC").ok_or_else(|| bad("POP3BENCH_EXEC not set"))?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    eprintln!("listening on {}", listener.local_addr()?);
    std::thread::spawn(|| {
        loop {
            // Reaps every child, so their CPU time lands in this process's cutime/cstime.
            if nix::sys::wait::waitpid(None::<nix::unistd::Pid>, None).is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    for stream in listener.incoming() {
        let stream = stream?;
        stream.set_nodelay(true)?;
        let input: OwnedFd = stream.try_clone()?.into();
        let output: OwnedFd = stream.into();
        let spawned = Command::new(&exec)
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(output))
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            // The child is reaped by the thread above, not through its handle.
            Ok(child) => std::mem::forget(child),
            Err(e) => eprintln!("spawn: {e}"),
        }
    }
    Ok(())
}

/// The `trivial` role: a thread-per-connection server (threads kept for the next connection, as poplar
/// keeps them) answering the benchmark's dialogue from memory
/// (any user and password; the drop is chosen by the user name's prefix), TCP_NODELAY, replies flushed
/// when the client has nothing more buffered. The ceiling for login and RETR.
pub fn run_trivial(drops: &'static [(Spec, Expected)]) -> io::Result<()> {
    let read_root: Option<&'static Path> =
        std::env::var_os(READ_ROOT).map(|root| &*Box::leak(PathBuf::from(root).into_boxed_path()));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    eprintln!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        // On poplar's own pool (src/workers.rs): a thread that served a session waits for the next, as
        // poplar's do, so that the ceiling does not pay a thread start per login that poplar does not.
        poplar::workers::run(
            Box::new(move || {
                let _ = trivial_session(stream, drops, read_root);
                true
            }),
            "trivial",
            64 * 1024,
        )?;
    }
    Ok(())
}

/// The reader's handle on `user`'s Maildir (`O_PATH`, as poplar opens messages under its maildrop).
fn open_maildir(root: &Path, user: &str) -> io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    let path = mail::home(root, user).join("Maildir");
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    open(&path, flags, nix::sys::stat::Mode::empty())
        .map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Reads message `n`'s file whole into `buf` (kept for the session), through `maildir`.
fn read_message(maildir: &OwnedFd, n: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    use nix::fcntl::{OFlag, openat};
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let name = mail::maildir_name(n);
    let mut file = fs::File::from(openat(
        maildir,
        name.as_str(),
        flags,
        nix::sys::stat::Mode::empty(),
    )?);
    let len = usize::try_from(file.metadata()?.len()).map_err(|_| bad("message too large"))?;
    buf.resize(len, 0);
    io::Read::read_exact(&mut file, buf)
}

/// One session of the trivial server: answers from `drops`, in memory. With `read_root` (the reader),
/// USER opens the user's Maildir there and each RETR also reads the message's file, as a server that
/// keeps mail in files must: open under the Maildir, fstat, read it whole, close.
fn trivial_session(
    stream: TcpStream,
    drops: &'static [(Spec, Expected)],
    read_root: Option<&Path>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(4096, stream.try_clone()?);
    let mut out = io::BufWriter::with_capacity(64 * 1024, stream);
    out.write_all(b"+OK trivial ready\r\n")?;
    out.flush()?;
    let (mut line, mut drop) = (Vec::new(), &drops[0].1);
    let (mut maildir, mut content) = (None, Vec::new());
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = std::str::from_utf8(&line).unwrap_or("").trim_end();
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        match verb.to_ascii_uppercase().as_str() {
            "USER" => {
                drop = drops
                    .iter()
                    .find(|(d, _)| arg.starts_with(d.prefix))
                    .map_or(drop, |(_, e)| e);
                if let Some(root) = read_root {
                    maildir = Some(open_maildir(root, arg)?);
                }
                out.write_all(b"+OK\r\n")?;
            }
            "STAT" => write!(
                out,
                "+OK {} {}\r\n",
                drop.octets.len(),
                drop.octets.iter().sum::<u64>()
            )?,
            "LIST" => {
                out.write_all(b"+OK\r\n")?;
                for (i, o) in drop.octets.iter().enumerate() {
                    write!(out, "{} {o}\r\n", i + 1)?;
                }
                out.write_all(b".\r\n")?;
            }
            "RETR" => match arg
                .parse::<usize>()
                .ok()
                .and_then(|n| Some((n, drop.bodies.get(n.checked_sub(1)?)?)))
            {
                Some((n, body)) => {
                    if let Some(dir) = &maildir {
                        read_message(dir, n - 1, &mut content)?;
                    }
                    // Status line, body and terminator in one writev, with no copy of the body
                    // (as poplar sends them): a ceiling must not pay what the server avoids.
                    out.flush()?;
                    let status = format!("+OK {} octets\r\n", drop.octets[n - 1]);
                    write_all_vectored(out.get_mut(), &[status.as_bytes(), body, b".\r\n"])?;
                }
                None => out.write_all(b"-ERR no such message\r\n")?,
            },
            "QUIT" => {
                out.write_all(b"+OK bye\r\n")?;
                return out.flush();
            }
            _ => out.write_all(b"+OK\r\n")?,
        }
        if reader.buffer().is_empty() {
            out.flush()?;
        }
    }
}

/// Writes `parts` whole with as few `writev` calls as the socket allows.
fn write_all_vectored(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
