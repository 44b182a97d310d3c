//! `make install` and `make uninstall` into a DESTDIR, with a PREFIX, installing the binary under test
//! (`BIN=`) so that no release build is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: [&str; 9] = [
    "inetd.conf",
    "xinetd.pop3",
    "poplar.socket",
    "poplar@.service",
    "poplar.service",
    "poplar-standalone.socket",
    "poplar.conf",
    "fail2ban-filter.conf",
    "fail2ban-jail.conf",
];

fn make(target: &str, destdir: &Path, prefix: &str) {
    let out = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(target)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("PREFIX={prefix}"))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_poplar")))
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {target} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path)
            } else {
                found.push(path.strip_prefix(root).unwrap().to_path_buf())
            }
        }
    }
    found.sort();
    found
}

#[test]
fn install_honours_destdir_and_prefix_and_uninstall_removes_everything() {
    let dest = tempfile::tempdir().unwrap();
    make("install", dest.path(), "/opt/poplar");
    let mut want: Vec<PathBuf> = vec![
        "opt/poplar/sbin/poplar".into(),
        "opt/poplar/share/man/man8/poplar.8".into(),
    ];
    want.extend(
        EXAMPLES
            .iter()
            .map(|f| PathBuf::from("opt/poplar/share/doc/poplar").join(f)),
    );
    want.sort();
    assert_eq!(files_under(dest.path()), want);

    let root = dest.path().join("opt/poplar");
    let bin = std::fs::read(root.join("sbin/poplar")).unwrap();
    assert_eq!(bin, std::fs::read(env!("CARGO_BIN_EXE_poplar")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("sbin/poplar"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // The examples name the binary where this PREFIX put it.
    let unit = std::fs::read_to_string(root.join("share/doc/poplar/poplar@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/poplar/sbin/poplar --inetd"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local"), "{unit}");
    let man = std::fs::read_to_string(root.join("share/man/man8/poplar.8")).unwrap();
    assert!(man.contains(".It Pa /opt/poplar/sbin/poplar\n"));
    assert!(man.contains(".It Pa /opt/poplar/share/doc/poplar/\n"));
    assert!(!man.contains("/usr/local"));

    make("uninstall", dest.path(), "/opt/poplar");
    assert_eq!(files_under(dest.path()), Vec::<PathBuf>::new());
}
