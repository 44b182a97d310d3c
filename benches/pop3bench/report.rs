//! The result table of a run: one row per figure, one column per server (poplar, the trivial
//! ceiling, then each peer of `PEER` in order), then the ratios poplar/<peer> and poplar/trivial.
//! The row labels are made here, in `row`, so that the goal checks find the rows the scenarios wrote.

use std::fmt::Write;

use crate::kind::Kind;

/// The labels of the table's rows.
pub mod row {
    /// The 50 KiB RETR maildrop, as its rows name it.
    pub const RETR_50K: &str = "100 x 50 KiB";
    /// The 1 MiB RETR maildrop.
    pub const RETR_1M: &str = "10 x 1 MiB";

    pub fn login(clients: usize) -> String {
        format!("login, {clients} client(s) (logins/s)")
    }
    pub fn login_cpu(clients: usize) -> String {
        format!("  server CPU per login, {clients} client(s) (ms)")
    }
    pub fn retr(name: &str, clients: usize) -> String {
        format!("retr {name}, {clients} client(s) (MB/s payload)")
    }
    pub fn retr_cpu(name: &str, clients: usize) -> String {
        format!("  server CPU per MB, {name}, {clients} client(s) (ms)")
    }
    pub fn idle(sessions: usize) -> String {
        format!("idle, {sessions} sessions: server PSS per session (KiB)")
    }
    /// `format` is "Maildir" or "mbox".
    pub fn big_first(format: &str, count: usize) -> String {
        format!("bigdrop {format} {count}: first login to end of UIDL (s)")
    }
    pub fn big_later(format: &str, count: usize) -> String {
        format!("bigdrop {format} {count}: later logins, median (s)")
    }
    pub fn expunge(count: usize) -> String {
        format!("expunge half of {count} mbox: QUIT to reply (s)")
    }
}

/// The result table: rows in the order first recorded, one value per server.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, Vec<(Kind, f64)>)>,
    notes: Vec<String>,
    /// The servers that failed a check or a scenario (each also has a note).
    failed: Vec<Kind>,
}

impl Table {
    pub fn record(&mut self, label: &str, kind: Kind, value: f64) {
        match self.rows.iter_mut().find(|(l, _)| l == label) {
            Some((_, values)) => values.push((kind, value)),
            None => self.rows.push((label.to_string(), vec![(kind, value)])),
        }
    }

    /// A remark printed under the table (and at once on stderr, for whoever watches the run).
    pub fn note(&mut self, text: String) {
        eprintln!("pop3bench: {text}");
        self.notes.push(text);
    }

    /// `kind` failed a check or could not run a scenario: noted, and remembered (a failure of
    /// poplar's fails its goals and the run).
    pub fn fail(&mut self, kind: Kind, text: String) {
        self.note(format!("{}: {text}", kind.name()));
        if !self.failed.contains(&kind) {
            self.failed.push(kind);
        }
    }

    pub fn failed(&self, kind: Kind) -> bool {
        self.failed.contains(&kind)
    }

    /// `kind`'s figure in the row `label`, if it was measured.
    pub fn get(&self, label: &str, kind: Kind) -> Option<f64> {
        let (_, values) = self.rows.iter().find(|(l, _)| l == label)?;
        values.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }

    /// The table as text. Without peers, one empty "peer" column stays, so that the layout of the
    /// one-peer table (which scripts may read by position) is the same whether or not a peer ran.
    pub fn render(&self, peers: &[Kind]) -> String {
        let names: Vec<&str> = if peers.is_empty() {
            vec!["peer"]
        } else {
            peers.iter().map(|k| k.name()).collect()
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "{:<52} {:>10} {:>10}",
            "scenario (unit)", "poplar", "trivial"
        );
        for name in &names {
            let _ = write!(out, " {name:>10}");
        }
        for name in &names {
            let _ = write!(out, " {:>9}", format!("p/{}", &name[..3.min(name.len())]));
        }
        let _ = writeln!(out, " {:>9}", "p/triv");
        let width = 52 + 11 * (2 + names.len()) + 10 * (names.len() + 1);
        let _ = writeln!(out, "{}", "-".repeat(width));
        for (label, _) in &self.rows {
            let p = self.get(label, Kind::Poplar);
            let t = self.get(label, Kind::Trivial);
            let others: Vec<Option<f64>> = if peers.is_empty() {
                vec![None]
            } else {
                peers.iter().map(|&k| self.get(label, k)).collect()
            };
            let _ = write!(out, "{label:<52} {:>10} {:>10}", number(p), number(t));
            for &o in &others {
                let _ = write!(out, " {:>10}", number(o));
            }
            for &o in &others {
                let _ = write!(out, " {:>9}", ratio(p, o));
            }
            let _ = writeln!(out, " {:>9}", ratio(p, t));
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// A figure with as many decimals as its size calls for; "-" when not measured.
pub fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.4}"),
        None => "-".to_string(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    }
}

// Cargo builds the harness-less bench with `--cfg test` but without its `#[test]` functions, which
// leaves their helpers unused there; the tests run from tests/pop3bench_report.rs.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::default();
        t.record(&row::login(8), Kind::Poplar, 3722.0);
        t.record(&row::login(8), Kind::Trivial, 5869.0);
        t.record(&row::login(8), Kind::Dovecot, 95.0);
        t.record(&row::login(8), Kind::Popa3d, 101.0);
        t.record(&row::expunge(100_000), Kind::Poplar, 0.316);
        t.record(&row::expunge(100_000), Kind::Popa3d, 0.21);
        t
    }

    #[test]
    fn one_peer_keeps_the_single_peer_layout() {
        let text = sample().render(&[Kind::Dovecot]);
        let lines: Vec<&str> = text.lines().collect();
        let header = format!(
            "{:<52} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "scenario (unit)", "poplar", "trivial", "dovecot", "p/dov", "p/triv"
        );
        assert_eq!(lines[0], header);
        assert_eq!(lines[1], "-".repeat(105));
        let login = format!(
            "{:<52} {:>10} {:>10} {:>10} {:>9} {:>9}",
            row::login(8),
            "3722",
            "5869",
            "95.00",
            "39.18",
            "0.63"
        );
        assert_eq!(lines[2], login);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn each_peer_gets_a_column_and_a_ratio() {
        let text = sample().render(&[Kind::Dovecot, Kind::Popa3d]);
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header[2..],
            [
                "poplar", "trivial", "dovecot", "popa3d", "p/dov", "p/pop", "p/triv"
            ]
        );
        assert_eq!(lines[1].len(), lines[0].len());
        assert!(lines[2].starts_with(&row::login(8)));
        let login: Vec<&str> = lines[2].split_whitespace().rev().take(7).collect();
        assert_eq!(
            login,
            ["0.63", "36.85", "39.18", "101", "95.00", "5869", "3722"]
        );
        // The expunge row has no trivial or dovecot figure.
        let expunge: Vec<&str> = lines[3].split_whitespace().rev().take(7).collect();
        assert_eq!(expunge, ["-", "1.50", "-", "0.2100", "-", "-", "0.3160"]);
    }

    #[test]
    fn without_a_peer_the_peer_column_stays_empty() {
        let text = sample().render(&[]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("      peer     p/pee    p/triv"),
            "{}",
            lines[0]
        );
        assert!(
            lines[2].ends_with("         -         -      0.63"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn notes_follow_the_rows() {
        let mut t = sample();
        t.note("popa3d: mbox scenarios skipped".to_string());
        let text = t.render(&[Kind::Popa3d]);
        assert_eq!(
            text.lines().last(),
            Some("note: popa3d: mbox scenarios skipped")
        );
    }
}
