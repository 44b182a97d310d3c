//! The pure parsers of single setting values: yes/no words, numbers in a range, listening addresses,
//! networks (`proxy-from`, `allow_nets`), unique-id sources, host names and log levels. Each returns the
//! problem as text; which option takes which parser, and where a bad value came from, are not its business.

use std::net::SocketAddr;

use log::LevelFilter;

use crate::maildrop::maildir_uidl::MaildirUidl;
use crate::maildrop::mbox::UidlSource;

pub(super) fn required(value: Option<&str>) -> Result<&str, String> {
    value.ok_or_else(|| "missing value".to_string())
}

pub(super) fn nonempty(value: &str) -> Result<&str, String> {
    if value.is_empty() {
        Err("empty value".to_string())
    } else {
        Ok(value)
    }
}

/// A value `--check-config` prints back as it is (a path, a user or group name): not empty, and
/// without white space at either end or a line break, which a configuration file cannot hold (it
/// trims values and ends them at a line's end).
pub(super) fn verbatim(value: &str) -> Result<&str, String> {
    let value = nonempty(value)?;
    if value.trim() != value || value.contains(['\n', '\r']) {
        return Err(
            "white space at either end, or a line break: not a value a configuration file can hold"
                .to_string(),
        );
    }
    Ok(value)
}

/// Whether `value` turns a yes/no setting on (`yes`, `true`, `on`, `1`, in any case).
pub fn is_yes(value: &str) -> bool {
    boolean(Some(value)) == Ok(true)
}

/// Whether `value` turns a yes/no setting off (`no`, `false`, `off`, `0`, in any case).
pub fn is_no(value: &str) -> bool {
    boolean(Some(value)) == Ok(false)
}

pub(super) fn boolean(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("yes" | "true" | "on" | "1") => Ok(true),
        Some("no" | "false" | "off" | "0") => Ok(false),
        Some(other) => Err(format!("expected yes or no, not \"{other}\"")),
    }
}

pub(super) fn number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    // A negative or overlong integer is a number all the same: it is out of range, not "not a number".
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Err(_) if !integer => Err(format!("not a number: \"{value}\"")),
        _ => Err(format!("{value} is out of range ({min}..={max})")),
    }
}

pub(super) fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("\"{value}\" is not ADDR:PORT (e.g. 0.0.0.0:110, [::]:110, 127.0.0.1:1110)")
    })
}

/// `10.0.0.0/8,::1` → networks; a bare address is a single host. An empty item (`a,,b`, a trailing
/// comma) is refused like any other empty value: it is a network left out, not a list to shorten.
pub(crate) fn parse_cidrs(value: &str) -> Result<Vec<(std::net::IpAddr, u8)>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|part| {
            if part.is_empty() {
                return Err(format!("empty network in \"{value}\""));
            }
            let (addr, prefix) = part
                .split_once('/')
                .map_or((part, None), |(a, p)| (a, Some(p)));
            let addr: std::net::IpAddr = addr
                .parse()
                .map_err(|_| format!("\"{part}\" is not an address or CIDR"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("bad prefix length in \"{part}\""))?,
            };
            // Peers are compared as IPv4 when they are IPv4-mapped (see `in_networks`), so a mapped
            // network is kept as the IPv4 one it names, or it would never match.
            match addr {
                std::net::IpAddr::V6(v6) if prefix >= 96 => Ok(v6
                    .to_ipv4_mapped()
                    .map_or((addr, prefix), |v4| (std::net::IpAddr::V4(v4), prefix - 96))),
                _ => Ok((addr, prefix)),
            }
        })
        .collect()
}

/// Whether `addr` falls in one of `networks` (as parsed from `proxy-from`).
pub fn in_networks(addr: std::net::IpAddr, networks: &[(std::net::IpAddr, u8)]) -> bool {
    let addr = match addr {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|&(net, prefix)| match (addr, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    })
}

/// `popa3d`: popa3d's ids, so its users switch without downloading everything again; `x-uidl`: reuse the
/// `X-UIDL:` headers qpopper and others wrote into the mbox, popa3d's ids for messages without one.
pub(super) fn parse_mbox_uidl(value: &str) -> Result<UidlSource, String> {
    match value.to_ascii_lowercase().as_str() {
        "popa3d" => Ok(UidlSource::Popa3d),
        "x-uidl" => Ok(UidlSource::XUidl),
        _ => Err(format!("\"{value}\" is not popa3d or x-uidl")),
    }
}

/// `name`: the file's base name, as Courier and Dovecot's `%f` give; `dovecot`: the ids Dovecot's POP3
/// server announced (its default `%08Xu%08Xv`, or a saved one), read from `dovecot-uidlist`.
pub(super) fn parse_maildir_uidl(value: &str) -> Result<MaildirUidl, String> {
    match value.to_ascii_lowercase().as_str() {
        "name" => Ok(MaildirUidl::Name),
        "dovecot" => Ok(MaildirUidl::Dovecot),
        _ => Err(format!("\"{value}\" is not name or dovecot")),
    }
}

/// A DNS name (RFC 1123 section 2.1): labels of 1 to 63 letters, digits and hyphens, none at either
/// end of a label, 253 octets in all, a final dot allowed; `_` allowed as well, as some hosts have it.
pub(super) fn parse_hostname(value: &str) -> Result<String, String> {
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.len() <= 253 && name.split('.').all(valid_label) {
        Ok(value.to_string())
    } else {
        Err(format!("\"{value}\" is not a host name"))
    }
}

pub(super) fn parse_level(value: &str) -> Result<LevelFilter, String> {
    match value.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(format!(
            "\"{value}\" is not one of off, error, warn, info, debug, trace"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, apply_file, parse_file_text};

    #[test]
    fn host_names() {
        for good in [
            "mail",
            "mail.example.org",
            "mail.example.org.",
            "a-b.example",
            "x1_2.example",
            "1.2.3.4",
        ] {
            assert_eq!(parse_hostname(good).as_deref(), Ok(good));
        }
        let long_label = "a".repeat(64);
        for bad in [
            "",
            ".",
            "-x",
            "x-",
            "a..b",
            ".a",
            "a..",
            "a b",
            "a/b",
            &long_label,
        ] {
            assert_eq!(
                parse_hostname(bad),
                Err(format!("\"{bad}\" is not a host name")),
                "{bad}"
            );
        }
    }

    #[test]
    fn cidrs() {
        let nets = parse_cidrs("10.0.0.0/8, 192.168.1.5,::1,fd00::/8").unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert!(in_networks(ip("10.1.2.3"), &nets));
        assert!(in_networks(ip("::ffff:10.1.2.3"), &nets));
        assert!(in_networks(ip("192.168.1.5"), &nets));
        assert!(!in_networks(ip("192.168.1.6"), &nets));
        assert!(in_networks(ip("::1"), &nets));
        assert!(in_networks(ip("fd12::1"), &nets));
        assert!(!in_networks(ip("fe80::1"), &nets));
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        // Written IPv4-mapped, as some configurations of dual-stack hosts do.
        let mapped = parse_cidrs("::ffff:10.0.0.5, ::ffff:192.168.0.0/112").unwrap();
        assert!(in_networks(ip("10.0.0.5"), &mapped));
        assert!(in_networks(ip("::ffff:10.0.0.5"), &mapped));
        assert!(in_networks(ip("192.168.7.1"), &mapped));
        assert!(!in_networks(ip("10.0.0.6"), &mapped));
        assert!(parse_cidrs("example.org").is_err());
        assert_eq!(
            parse_cidrs("10.0.0.1,,::1").unwrap_err(),
            "empty network in \"10.0.0.1,,::1\""
        );
        assert!(parse_cidrs("10.0.0.1,").is_err());
    }

    /// Like every other option, `proxy-from` with nothing after the `=` is a mistake, not an empty list:
    /// no option treats an empty value as "unset".
    #[test]
    fn empty_proxy_from_is_an_error() {
        let path = Path::new("/etc/poplar.conf");
        let settings = parse_file_text(path, "proxy-from =\n").unwrap();
        let e = apply_file(&mut Config::default(), path, &settings).unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:1: proxy-from: empty value");
        assert_eq!(
            Config::default().set("proxy-from", Some(",")).unwrap_err(),
            "empty network in \",\""
        );
    }

    /// A `key` that takes one of a few words: the default, each value of `table` (`None`: refused), a
    /// missing value, and `key = file_value` in a file giving `from_file`.
    fn check_choice<T: PartialEq + std::fmt::Debug + Copy>(
        key: &str,
        get: fn(&Config) -> T,
        default: T,
        table: &[(&str, Option<T>)],
        (file_value, from_file): (&str, T),
    ) {
        for (value, expected) in table {
            let mut c = Config::default();
            assert_eq!(get(&c), default, "the default");
            match expected {
                Some(choice) => {
                    c.set(key, Some(value)).unwrap();
                    assert_eq!(get(&c), *choice, "{value:?}");
                }
                None => assert!(c.set(key, Some(value)).is_err(), "{value:?}"),
            }
        }
        assert_eq!(
            Config::default().set(key, None).unwrap_err(),
            "missing value"
        );
        let path = Path::new("/etc/poplar.conf");
        let mut c = Config::default();
        let text = format!("{key} = {file_value}\n");
        apply_file(&mut c, path, &parse_file_text(path, &text).unwrap()).unwrap();
        assert_eq!(get(&c), from_file);
    }

    #[test]
    fn mbox_uidl_values() {
        check_choice(
            "mbox-uidl",
            |c| c.mbox_uidl,
            UidlSource::Popa3d,
            &[
                ("popa3d", Some(UidlSource::Popa3d)),
                ("x-uidl", Some(UidlSource::XUidl)),
                ("X-UIDL", Some(UidlSource::XUidl)),
                ("xuidl", None),
                ("", None),
            ],
            ("x-uidl", UidlSource::XUidl),
        );
    }

    #[test]
    fn maildir_uidl_values() {
        check_choice(
            "maildir-uidl",
            |c| c.maildir_uidl,
            MaildirUidl::Name,
            &[
                ("name", Some(MaildirUidl::Name)),
                ("dovecot", Some(MaildirUidl::Dovecot)),
                ("Dovecot", Some(MaildirUidl::Dovecot)),
                ("courier", None),
                ("", None),
            ],
            ("dovecot", MaildirUidl::Dovecot),
        );
    }
}
