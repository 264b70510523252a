//! Checks an audit chain: every line a record, numbered in order, each
//! `prev` the hash of the record before, each hash its record's own. Names
//! the first record that breaks the chain.

use std::fmt;
use std::io::BufRead;

use super::record::{AuditRecord, GENESIS};

/// A chain that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The last record's hash (compare it with one kept elsewhere to detect
    /// records cut off at the end).
    pub head: String,
    /// Whether the file ended in a partial line: a write the gateway never
    /// acknowledged (it crashed mid-write), so no response depended on it.
    pub torn_tail: bool,
}

/// Where and how a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line number.
    pub line: u64,
    /// The `seq` the record should have had.
    pub expected_seq: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the chain breaks at line {} (record {}): {}", self.line, self.expected_seq, self.reason)
    }
}

/// Verifies the chain read from `input`.
pub fn verify(input: impl BufRead) -> Result<Verified, Broken> {
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    let mut lines = input.split(b'\n').peekable();
    let mut line_no = 0u64;
    let mut torn_tail = false;
    while let Some(line) = lines.next() {
        line_no += 1;
        let broken = |reason: String| Broken { line: line_no, expected_seq: n + 1, reason };
        let line = line.map_err(|e| broken(format!("unreadable: {e}")))?;
        let last = lines.peek().is_none();
        if line.is_empty() && last {
            break;
        }
        let parsed = std::str::from_utf8(&line).map_err(|_| "not UTF-8".to_owned()).and_then(AuditRecord::parse);
        let (record, claimed) = match parsed {
            Ok(r) => r,
            // A partial last line: a write cut short by a crash.
            Err(_) if last => {
                torn_tail = true;
                break;
            }
            Err(e) => return Err(broken(e)),
        };
        if record.seq != n + 1 {
            return Err(broken(format!("numbered {} (a record was removed, added or moved)", record.seq)));
        }
        if record.prev != prev {
            return Err(broken("its prev is not the hash of the record before (removed or reordered)".into()));
        }
        if record.hash() != claimed {
            return Err(broken("its hash does not match its content (edited)".into()));
        }
        prev = claimed;
        n += 1;
    }
    Ok(Verified { records: n, head: prev, torn_tail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::AuditEvent;

    fn chain(n: u32) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|i| {
                let event = AuditEvent {
                    app: "app".into(),
                    citizen: format!("{i:032x}"),
                    method: "lienthong.v1.PublicServicesService/GetDossier".into(),
                    records: vec![format!("000.00.04.H29-251119-{i:04}")],
                    purpose: "public-service".into(),
                    outcome: "OK".into(),
                    trace_id: format!("{i:032x}"),
                };
                let (line, hash) =
                    AuditRecord::new(event, u64::from(i), 1_700_000_000_000 + u64::from(i), prev.clone()).line();
                prev = hash;
                line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<Verified, Broken> {
        verify(format!("{}\n", lines.join("\n")).as_bytes())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let lines = chain(5);
        let v = check(&lines).unwrap();
        assert_eq!((v.records, v.torn_tail), (5, false));
        assert_eq!(v.head, AuditRecord::parse(&lines[4]).unwrap().1);
        assert_eq!(verify(&b""[..]).unwrap().records, 0);
    }

    #[test]
    fn any_tampering_names_the_first_broken_record() {
        let lines = chain(5);
        // Edited.
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"OK\"", "\"PERMISSION_DENIED\"");
        let e = check(&edited).unwrap_err();
        assert_eq!((e.line, e.expected_seq), (3, 3));
        assert!(e.reason.contains("edited"), "{e}");
        // Removed.
        let mut removed = lines.clone();
        removed.remove(1);
        assert_eq!(check(&removed).unwrap_err().line, 2);
        // Reordered.
        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        assert_eq!(check(&swapped).unwrap_err().line, 4);
        // Removed and renumbered by hand: the hashes still give it away.
        let mut forged = lines.clone();
        forged.remove(1);
        for (i, l) in forged.iter_mut().enumerate().skip(1) {
            *l = l.replace(&format!("\"seq\":{}", i + 2), &format!("\"seq\":{}", i + 1));
        }
        assert_eq!(check(&forged).unwrap_err().line, 2);
        // Garbage in the middle.
        let mut garbage = lines.clone();
        garbage.insert(2, "not a record".into());
        assert_eq!(check(&garbage).unwrap_err().line, 3);
    }

    #[test]
    fn a_torn_last_line_is_not_a_break() {
        let lines = chain(3);
        let torn = format!("{}\n{}", lines[..2].join("\n"), &lines[2][..40]);
        let v = verify(torn.as_bytes()).unwrap();
        assert_eq!((v.records, v.torn_tail), (2, true));
    }
}
