//! The user-database parsers on arbitrary bytes: the passwd-file (with its password schemes), and the
//! /etc/passwd, /etc/shadow and /etc/group formats of `--system-users`. None may panic; every account
//! the passwd-file yields has a non-empty name without ':' or a line break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::auth::{passwd_file, unix_files};

fuzz_target!(|text: &[u8]| {
    if let Ok(accounts) = passwd_file::parse(text) {
        for a in &accounts {
            assert!(!a.name.is_empty() && !a.name.contains([':', '\n']), "{a:?}");
        }
    }
    let (users, _) = unix_files::parse_passwd(text);
    let (shadows, _) = unix_files::parse_shadow(text);
    for s in &shadows {
        let _ = unix_files::expired(s, 20_000);
    }
    let user = users.first().map_or("root", |u| u.name.as_str());
    let groups = unix_files::groups_of(text, user, 7);
    assert_eq!(groups[0], 7);
});
