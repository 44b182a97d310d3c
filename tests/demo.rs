//! `make run`, the README's first command: it must give a working demo server whoever runs it (as root,
//! poplar refuses to open a maildrop as root, so the demo account needs real ids), and Ctrl-C must stop it
//! and remove its temporary folder. Runs the Makefile recipe with this build's binary on port 0, and learns
//! the port the server bound from its `listening on` line.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{BIN, Client};

#[test]
fn make_run_serves_the_demo_user_and_cleans_up() {
    let mut make = Command::new("make")
        .args(["-s", "run", &format!("BIN={BIN}"), "DEMO_ADDR=127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("make");
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(make.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(make.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let (mut folder, mut addr) = (None, None);
    let mut seen = Vec::new();
    // The folder is announced on stdout, the address on stderr: two pipes, read by two threads, whose
    // lines may come in either order.
    while folder.is_none() || addr.is_none() {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            break;
        };
        if let Some(rest) = line.split("removes ").nth(1) {
            folder = Some(PathBuf::from(rest.trim_end_matches('.')));
        }
        if let Some(bound) = line.split("listening on ").nth(1) {
            addr = bound.trim().parse::<SocketAddr>().ok();
        }
        seen.push(line);
    }
    let folder = folder.unwrap_or_else(|| panic!("no demo folder announced: {seen:#?}"));
    let addr = addr.unwrap_or_else(|| panic!("no listening address announced: {seen:#?}"));
    assert_ne!(addr.port(), 0, "{seen:#?}");
    assert!(folder.is_dir(), "{folder:?}");

    let mut client = Client::connect(addr);
    client.greeting();
    client.login("demo", "demo");
    let stat = client.cmd("STAT");
    assert!(stat.starts_with("+OK 4 "), "{stat}");
    assert!(client.cmd("QUIT").starts_with("+OK"));

    // Ctrl-C reaches the whole foreground process group: make, its shell and the server.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(make.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut exited = false;
    for _ in 0..200 {
        if make.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if !exited {
        let _ = make.kill();
    }
    assert!(exited, "make run did not stop on SIGINT");
    assert!(!folder.exists(), "{folder:?} left behind");
}
