//! The goals of the benchmark's issue, checked against the figures of one run and printed under the
//! table: each met, not met, or not measured (its scenario or its peer did not run), with the numbers.
//! The goals are stated for the full run (1,000 idle sessions, 100,000-message maildrops); a quick run
//! checks the same rows at its smaller sizes and says so.

use std::fmt::Write;

use crate::kind::Kind;
use crate::report::{Table, number, row};

/// What a goal asks of poplar's figure (or of its ratio to the other server's).
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(b) => v >= b,
            Bound::AtMost(b) => v <= b,
            Bound::Below(b) => v < b,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    NotMeasured(String),
    Skipped(String),
    /// poplar has no figure because it failed a check or a scenario of the run: counted as not met.
    Failed,
}

/// One goal's outcome: `goal` says what is asked, `figures` what the run measured.
#[derive(Debug)]
pub struct Check {
    pub goal: String,
    pub figures: String,
    pub verdict: Verdict,
}

/// The scenarios and peers the run ran, and its sizes.
pub struct Scope<'a> {
    /// The names of BENCH_SCENARIOS.
    pub scenarios: &'a [String],
    pub peers: &'a [Kind],
    /// Messages in each big maildrop (bigdrop and expunge).
    pub big: usize,
    /// The largest number of idle sessions held.
    pub idle: usize,
}

const FULL_BIG: usize = 100_000;
const FULL_IDLE: usize = 1000;

/// Every goal of the issue, in its order.
pub fn check(table: &Table, scope: &Scope) -> Vec<Check> {
    let big = scope.big;
    let ratio = |goal: &str, label: &str, other: Kind, bound: Bound, unit: &str| {
        relative(table, scope.peers, goal, label, other, bound, unit)
    };
    let mut checks = Vec::new();
    // A goal of a scenario left out of BENCH_SCENARIOS is not measured, whichever peers ran.
    let mut add = |scenario: &str, c: Check| {
        let ran = scope.scenarios.iter().any(|s| s == scenario);
        checks.push(if ran || matches!(c.verdict, Verdict::Skipped(_)) {
            c
        } else {
            Check {
                figures: String::new(),
                verdict: Verdict::NotMeasured("scenario not run".to_string()),
                ..c
            }
        });
    };
    let login = row::login(8);
    add(
        "login",
        ratio(
            "login, 8 clients: poplar >= 10 x dovecot",
            &login,
            Kind::Dovecot,
            Bound::AtLeast(10.0),
            "logins/s",
        ),
    );
    add(
        "login",
        ratio(
            "login, 8 clients: poplar >= 0.5 x trivial",
            &login,
            Kind::Trivial,
            Bound::AtLeast(0.5),
            "logins/s",
        ),
    );
    let retr = row::retr(row::RETR_50K, 4);
    add(
        "retr",
        ratio(
            "retr 100 x 50 KiB, 4 clients: poplar >= 5 x dovecot",
            &retr,
            Kind::Dovecot,
            Bound::AtLeast(5.0),
            "MB/s",
        ),
    );
    add(
        "retr",
        ratio(
            "retr 100 x 50 KiB, 4 clients: poplar >= 0.7 x trivial",
            &retr,
            Kind::Trivial,
            Bound::AtLeast(0.7),
            "MB/s",
        ),
    );
    add(
        "idle",
        absolute(
            table,
            &format!("idle, {} sessions: <= 32 KiB PSS per session", scope.idle),
            &row::idle(scope.idle),
            Bound::AtMost(32.0),
            "KiB",
        ),
    );
    for format in ["mbox", "Maildir"] {
        let first = format!("bigdrop {format} {big}, first login: poplar faster than popa3d");
        let first = if format == "Maildir" {
            Check {
                goal: first,
                figures: String::new(),
                verdict: Verdict::Skipped("popa3d has no Maildir".to_string()),
            }
        } else {
            ratio(
                &first,
                &row::big_first(format, big),
                Kind::Popa3d,
                Bound::Below(1.0),
                "s",
            )
        };
        add("bigdrop", first);
        add(
            "bigdrop",
            ratio(
                &format!("bigdrop {format} {big}, later logins: poplar <= 0.5 x dovecot"),
                &row::big_later(format, big),
                Kind::Dovecot,
                Bound::AtMost(0.5),
                "s",
            ),
        );
    }
    add(
        "expunge",
        ratio(
            &format!("expunge half of {big} mbox: poplar no slower than popa3d"),
            &row::expunge(big),
            Kind::Popa3d,
            Bound::AtMost(1.0),
            "s",
        ),
    );
    checks
}

/// poplar's figure in `label` divided by `other`'s, against `bound`.
fn relative(
    table: &Table,
    peers: &[Kind],
    goal: &str,
    label: &str,
    other: Kind,
    bound: Bound,
    unit: &str,
) -> Check {
    let outcome = |figures: String, verdict| Check {
        goal: goal.to_string(),
        figures,
        verdict,
    };
    if other != Kind::Trivial && !peers.contains(&other) {
        let why = format!("{} not in PEER", other.name());
        return outcome(String::new(), Verdict::NotMeasured(why));
    }
    let (p, o) = (table.get(label, Kind::Poplar), table.get(label, other));
    let (p, o) = match (p, o) {
        (Some(p), Some(o)) if o > 0.0 => (p, o),
        (None, _) => return outcome(String::new(), no_figure(table, Kind::Poplar)),
        _ => return outcome(String::new(), no_figure(table, other)),
    };
    let r = p / o;
    let figures = format!(
        "poplar {}, {} {} {unit}: {r:.2} x",
        number(Some(p)),
        other.name(),
        number(Some(o))
    );
    outcome(figures, verdict(bound.holds(r)))
}

/// poplar's own figure in `label` against `bound`.
fn absolute(table: &Table, goal: &str, label: &str, bound: Bound, unit: &str) -> Check {
    let (figures, verdict) = match table.get(label, Kind::Poplar) {
        Some(p) => (
            format!("poplar {} {unit}", number(Some(p))),
            verdict(bound.holds(p)),
        ),
        None => (String::new(), no_figure(table, Kind::Poplar)),
    };
    Check {
        goal: goal.to_string(),
        figures,
        verdict,
    }
}

fn verdict(met: bool) -> Verdict {
    if met { Verdict::Met } else { Verdict::NotMet }
}

/// The verdict of a goal without `kind`'s figure: failed if poplar has none because it failed in
/// this run (a broken server must not turn its goals into "not measured"), else not measured.
fn no_figure(table: &Table, kind: Kind) -> Verdict {
    if kind == Kind::Poplar && table.failed(kind) {
        Verdict::Failed
    } else {
        Verdict::NotMeasured(format!("no {} figure", kind.name()))
    }
}

/// The goals block printed at the end of a run.
pub fn render(checks: &[Check], scope: &Scope) -> String {
    let mut out = String::from("\ngoals of the benchmark's issue, from this run's figures:\n");
    if scope.big != FULL_BIG || scope.idle != FULL_IDLE {
        let _ = writeln!(
            out,
            "  (this run: {} idle sessions and {}-message maildrops; the goals are stated for {FULL_IDLE} and {FULL_BIG})",
            scope.idle, scope.big
        );
    }
    for c in checks {
        let verdict = match &c.verdict {
            Verdict::Met => "met".to_string(),
            Verdict::NotMet => "not met".to_string(),
            Verdict::NotMeasured(why) => format!("not measured ({why})"),
            Verdict::Skipped(why) => format!("skipped ({why})"),
            Verdict::Failed => "not met: poplar FAILED in this run (see the notes)".to_string(),
        };
        if c.figures.is_empty() {
            let _ = writeln!(out, "  {}: {verdict}", c.goal);
        } else {
            let _ = writeln!(out, "  {}: {}: {verdict}", c.goal, c.figures);
        }
    }
    let measured = checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Met | Verdict::NotMet | Verdict::Failed))
        .count();
    let met = checks.iter().filter(|c| c.verdict == Verdict::Met).count();
    let _ = writeln!(out, "  {met} of {measured} measured goals met");
    out
}

/// With the reader in the run: how much of the RETR goal's margin the file reads alone take, and how
/// close poplar comes to the reader. Empty without the reader's figure.
pub fn reader_context(table: &Table) -> String {
    let label = row::retr(row::RETR_50K, 4);
    let [Some(p), Some(r), Some(t)] =
        [Kind::Poplar, Kind::Reader, Kind::Trivial].map(|k| table.get(&label, k))
    else {
        return String::new();
    };
    if r <= 0.0 || t <= 0.0 {
        return String::new();
    }
    format!(
        "  context, retr 100 x 50 KiB, 4 clients: the reader (trivial + reading each file) {} MB/s = {:.2} x trivial; poplar = {:.2} x reader\n",
        number(Some(r)),
        r / t,
        p / r
    )
}

// Cargo builds the harness-less bench with `--cfg test` but without its `#[test]` functions, which
// leaves their helpers unused there; the tests run from tests/pop3bench_report.rs.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;

    const BOTH: &[Kind] = &[Kind::Dovecot, Kind::Popa3d];

    fn all() -> Vec<String> {
        ["login", "retr", "idle", "bigdrop", "expunge"]
            .map(String::from)
            .to_vec()
    }

    fn scope<'a>(scenarios: &'a [String], peers: &'a [Kind]) -> Scope<'a> {
        Scope {
            scenarios,
            peers,
            big: FULL_BIG,
            idle: FULL_IDLE,
        }
    }

    /// The figures of the README's run, with popa3d's from its own runs.
    fn full() -> Table {
        let mut t = Table::default();
        let mut put = |label: String, values: &[(Kind, f64)]| {
            for &(k, v) in values {
                t.record(&label, k, v);
            }
        };
        use Kind::*;
        put(
            row::login(8),
            &[(Poplar, 3722.0), (Trivial, 5869.0), (Dovecot, 95.0)],
        );
        put(
            row::retr(row::RETR_50K, 4),
            &[(Poplar, 757.0), (Trivial, 1939.0), (Dovecot, 198.0)],
        );
        put(row::idle(1000), &[(Poplar, 17.5), (Dovecot, 627.0)]);
        put(
            row::big_first("mbox", FULL_BIG),
            &[(Poplar, 0.207), (Dovecot, 12.4), (Popa3d, 1.16)],
        );
        put(
            row::big_later("mbox", FULL_BIG),
            &[(Poplar, 0.103), (Dovecot, 0.405), (Popa3d, 0.17)],
        );
        put(
            row::big_first("Maildir", FULL_BIG),
            &[(Poplar, 1.69), (Dovecot, 3.95)],
        );
        put(
            row::big_later("Maildir", FULL_BIG),
            &[(Poplar, 0.140), (Dovecot, 0.473)],
        );
        put(
            row::expunge(FULL_BIG),
            &[(Poplar, 0.316), (Dovecot, 3.24), (Popa3d, 0.21)],
        );
        t
    }

    fn verdicts(checks: &[Check]) -> Vec<(&str, &Verdict)> {
        checks
            .iter()
            .map(|c| (c.goal.as_str(), &c.verdict))
            .collect()
    }

    #[test]
    fn every_goal_is_judged_from_the_figures() {
        let checks = check(&full(), &scope(&all(), BOTH));
        let v = verdicts(&checks);
        assert_eq!(v.len(), 10);
        assert_eq!(
            v[0],
            ("login, 8 clients: poplar >= 10 x dovecot", &Verdict::Met)
        );
        assert_eq!(v[1].1, &Verdict::Met); // 0.63 x trivial
        assert_eq!(v[2].1, &Verdict::NotMet); // 3.8 x dovecot
        assert_eq!(v[3].1, &Verdict::NotMet); // 0.39 x trivial
        assert_eq!(
            v[4],
            (
                "idle, 1000 sessions: <= 32 KiB PSS per session",
                &Verdict::Met
            )
        );
        assert_eq!(v[5].1, &Verdict::Met); // mbox first login, 0.207 s < 1.16 s
        assert_eq!(v[6].1, &Verdict::Met); // mbox later, 0.25 x dovecot
        assert!(matches!(v[7].1, Verdict::Skipped(why) if why.contains("no Maildir")));
        assert_eq!(v[8].1, &Verdict::Met); // Maildir later, 0.30 x dovecot
        assert_eq!(v[9].1, &Verdict::NotMet); // expunge, 0.316 s > 0.21 s
        assert_eq!(
            checks[0].figures,
            "poplar 3722, dovecot 95.00 logins/s: 39.18 x"
        );
        assert_eq!(checks[4].figures, "poplar 17.50 KiB");
    }

    #[test]
    fn bounds_are_inclusive_except_faster_than() {
        assert!(Bound::AtLeast(10.0).holds(10.0));
        assert!(!Bound::AtLeast(10.0).holds(9.99));
        assert!(Bound::AtMost(0.5).holds(0.5));
        assert!(!Bound::AtMost(0.5).holds(0.51));
        assert!(!Bound::Below(1.0).holds(1.0));
        assert!(Bound::Below(1.0).holds(0.99));
    }

    #[test]
    fn a_peer_that_did_not_run_leaves_its_goals_unmeasured() {
        let checks = check(&full(), &scope(&all(), &[Kind::Popa3d]));
        let dovecot: Vec<&Verdict> = checks
            .iter()
            .filter(|c| c.goal.contains("dovecot"))
            .map(|c| &c.verdict)
            .collect();
        assert_eq!(dovecot.len(), 4);
        for v in dovecot {
            assert_eq!(v, &Verdict::NotMeasured("dovecot not in PEER".to_string()));
        }
        // The trivial server is not a peer: its goals stand without PEER.
        let checks = check(&full(), &scope(&all(), &[]));
        assert_eq!(checks[1].verdict, Verdict::Met);
        assert_eq!(
            checks[5].verdict,
            Verdict::NotMeasured("popa3d not in PEER".to_string())
        );
    }

    #[test]
    fn a_missing_figure_leaves_its_goal_unmeasured() {
        // All scenarios ran, but some failed (their errors are in the table's notes).
        let mut t = Table::default();
        t.record(&row::login(8), Kind::Poplar, 3000.0);
        t.record(&row::login(8), Kind::Trivial, 5000.0);
        let checks = check(&t, &scope(&all(), BOTH));
        assert_eq!(
            checks[0].verdict,
            Verdict::NotMeasured("no dovecot figure".to_string())
        );
        assert_eq!(checks[1].verdict, Verdict::Met);
        assert_eq!(
            checks[2].verdict,
            Verdict::NotMeasured("no poplar figure".to_string())
        );
        assert_eq!(
            checks[4].verdict,
            Verdict::NotMeasured("no poplar figure".to_string())
        );
    }

    #[test]
    fn a_poplar_failure_fails_its_goals_instead_of_leaving_them_unmeasured() {
        // retr ran, but poplar sent a wrong octet: no poplar figure for it.
        let mut t = Table::default();
        t.record(&row::login(8), Kind::Poplar, 3000.0);
        t.record(&row::login(8), Kind::Trivial, 5000.0);
        t.record(&row::retr(row::RETR_50K, 4), Kind::Trivial, 1500.0);
        t.fail(Kind::Poplar, "retr: RETR 7: octet 12 differs".to_string());
        let scenarios = all();
        let s = scope(&scenarios, &[]);
        let checks = check(&t, &s);
        assert_eq!(checks[1].verdict, Verdict::Met);
        assert_eq!(checks[3].verdict, Verdict::Failed);
        let text = render(&checks, &s);
        assert!(
            text.contains("poplar >= 0.7 x trivial: not met: poplar FAILED"),
            "{text}"
        );
        assert!(text.ends_with("  1 of 3 measured goals met\n"), "{text}");
        // A peer's failure leaves its goals unmeasured, as before.
        let mut t = Table::default();
        t.record(&row::login(8), Kind::Poplar, 3000.0);
        t.fail(Kind::Dovecot, "login: STAT: got (0, 0)".to_string());
        let checks = check(&t, &scope(&all(), BOTH));
        assert_eq!(
            checks[0].verdict,
            Verdict::NotMeasured("no dovecot figure".to_string())
        );
        assert!(!t.failed(Kind::Poplar));
    }

    #[test]
    fn a_scenario_left_out_leaves_its_goals_unmeasured() {
        let only = vec!["login".to_string(), "expunge".to_string()];
        let checks = check(&full(), &scope(&only, BOTH));
        let not_run = Verdict::NotMeasured("scenario not run".to_string());
        assert_eq!(checks[0].verdict, Verdict::Met);
        for i in [2, 3, 4, 5, 6, 8] {
            assert_eq!(checks[i].verdict, not_run, "{}", checks[i].goal);
            assert!(checks[i].figures.is_empty());
        }
        assert!(matches!(checks[7].verdict, Verdict::Skipped(_)));
        assert_eq!(checks[9].verdict, Verdict::NotMet);
    }

    #[test]
    fn the_reader_context_needs_all_three_figures() {
        let label = row::retr(row::RETR_50K, 4);
        let mut t = Table::default();
        t.record(&label, Kind::Poplar, 900.0);
        t.record(&label, Kind::Trivial, 1500.0);
        assert_eq!(reader_context(&t), "");
        t.record(&label, Kind::Reader, 1000.0);
        assert_eq!(
            reader_context(&t),
            "  context, retr 100 x 50 KiB, 4 clients: the reader (trivial + reading each file) 1000 MB/s = 0.67 x trivial; poplar = 0.90 x reader\n"
        );
    }

    #[test]
    fn a_quick_run_checks_its_own_sizes_and_says_so() {
        let mut t = Table::default();
        t.record(&row::expunge(20_000), Kind::Poplar, 0.05);
        t.record(&row::expunge(20_000), Kind::Popa3d, 0.04);
        t.record(&row::idle(200), Kind::Poplar, 40.0);
        let scenarios = all();
        let s = Scope {
            scenarios: &scenarios,
            peers: BOTH,
            big: 20_000,
            idle: 200,
        };
        let checks = check(&t, &s);
        assert_eq!(checks[4].verdict, Verdict::NotMet);
        assert_eq!(checks[9].verdict, Verdict::NotMet);
        let text = render(&checks, &s);
        assert!(
            text.contains("200 idle sessions and 20000-message maildrops"),
            "{text}"
        );
        assert!(text.contains(
            "expunge half of 20000 mbox: poplar no slower than popa3d: poplar 0.0500, popa3d 0.0400 s: 1.25 x: not met"
        ), "{text}");
        assert!(text.contains("bigdrop Maildir 20000, first login: poplar faster than popa3d: skipped (popa3d has no Maildir)"), "{text}");
        assert!(text.ends_with("  0 of 2 measured goals met\n"), "{text}");
        let full_text = render(&check(&full(), &scope(&all(), BOTH)), &scope(&all(), BOTH));
        assert!(!full_text.contains("this run:"), "{full_text}");
        assert!(
            full_text.ends_with("  6 of 9 measured goals met\n"),
            "{full_text}"
        );
    }
}
