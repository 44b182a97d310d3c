//! Mail-location expansion with arbitrary user names: never panics, and a name it accepts never adds a
//! path component: the expanded path has exactly as many components as the template with a plain name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::location::Location;
use std::path::Path;

fuzz_target!(|user: &str| {
    let location: Location = "maildir:/srv/mail/%u/Maildir".parse().unwrap();
    let Ok(path) = location.expand(user, Some(Path::new("/home/x"))) else {
        return;
    };
    let components: Vec<_> = path.components().collect();
    assert_eq!(components.len(), 5, "{user:?} -> {path:?}");
    assert_eq!(components[3].as_os_str(), user, "{user:?} -> {path:?}");
});
