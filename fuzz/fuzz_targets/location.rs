//! Mail-location expansion with arbitrary user names: never panics, and a name it accepts never adds or
//! removes a path component: the expanded path has exactly as many components as the template with a
//! plain name, for `%u` and for the `%d/%n` split of `user@domain`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::location::Location;
use std::path::{Component, Path};

fuzz_target!(|user: &str| {
    let location: Location = "maildir:/srv/mail/%u/Maildir".parse().unwrap();
    if let Ok(path) = location.expand(user, Some(Path::new("/home/x"))) {
        let components: Vec<_> = path.components().collect();
        assert_eq!(components.len(), 5, "{user:?} -> {path:?}");
        assert_eq!(components[3].as_os_str(), user, "{user:?} -> {path:?}");
    }
    let virtual_domains: Location = "maildir:/srv/vmail/%d/%n/Maildir".parse().unwrap();
    if let Ok(path) = virtual_domains.expand(user, None) {
        let components: Vec<_> = path.components().collect();
        assert_eq!(components.len(), 6, "{user:?} -> {path:?}");
        let (local, domain) = user.split_once('@').expect("%d accepted a name without '@'");
        assert_eq!(components[3].as_os_str(), domain, "{user:?} -> {path:?}");
        assert_eq!(components[4].as_os_str(), local, "{user:?} -> {path:?}");
        assert!(
            components.iter().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
            "{user:?} -> {path:?}"
        );
    }
});
