//! The servers the bench can measure, and the parsing of `PEER`: a comma-separated list of the peers
//! to run beside poplar and the trivial ceiling (`PEER=dovecot,popa3d`). `reader` is a second ceiling
//! rather than a peer: the trivial server reading each message's file as well.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Poplar,
    Trivial,
    Dovecot,
    Popa3d,
    /// The trivial server that also opens, reads and closes the message's file for each RETR: what
    /// any server that keeps mail in files cannot avoid. Runs in login and retr only.
    Reader,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Poplar => "poplar",
            Kind::Trivial => "trivial",
            Kind::Dovecot => "dovecot",
            Kind::Popa3d => "popa3d",
            Kind::Reader => "reader",
        }
    }
}

/// The peers named in `PEER`, in the order given, each once. Empty entries are ignored, so `PEER=`
/// and a trailing comma mean what they look like.
pub fn parse_peers(text: &str) -> Result<Vec<Kind>, String> {
    let mut peers = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = match name {
            "dovecot" => Kind::Dovecot,
            "popa3d" => Kind::Popa3d,
            "reader" => Kind::Reader,
            other => {
                return Err(format!(
                    "unknown PEER {other:?} (dovecot, popa3d, reader, or a list: dovecot,popa3d)"
                ));
            }
        };
        if !peers.contains(&kind) {
            peers.push(kind);
        }
    }
    Ok(peers)
}

// Cargo builds the harness-less bench with `--cfg test` but without its `#[test]` functions, which
// leaves their helpers unused there; the tests run from tests/pop3bench_report.rs.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_or_none() {
        assert_eq!(parse_peers(""), Ok(vec![]));
        assert_eq!(parse_peers("dovecot"), Ok(vec![Kind::Dovecot]));
        assert_eq!(parse_peers("popa3d"), Ok(vec![Kind::Popa3d]));
        assert_eq!(parse_peers("reader"), Ok(vec![Kind::Reader]));
    }

    #[test]
    fn a_list_keeps_its_order_and_drops_repeats() {
        assert_eq!(
            parse_peers("dovecot,popa3d"),
            Ok(vec![Kind::Dovecot, Kind::Popa3d])
        );
        assert_eq!(
            parse_peers(" popa3d , dovecot,popa3d,"),
            Ok(vec![Kind::Popa3d, Kind::Dovecot])
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(
            parse_peers("dovecot,courier")
                .unwrap_err()
                .contains("courier")
        );
        // The bench's own servers are not peers.
        assert!(parse_peers("poplar").is_err());
        assert!(parse_peers("trivial").is_err());
    }
}
