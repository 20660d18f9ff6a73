//! CloudWatch Embedded Metric Format. In Lambda, the decisions counted
//! during one invocation are printed after it as JSON lines that CloudWatch
//! Logs turns into metrics (namespace `streamguard`, metric `decisions`,
//! dimension `outcome`), with no agent. Prometheus `/metrics` is unchanged.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::{Value, json};

pub const NAMESPACE: &str = "streamguard";

static EMF: OnceLock<Emf> = OnceLock::new();

/// Decision counts not yet printed.
#[derive(Default)]
pub struct Emf {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Emf {
    pub fn add(&self, outcome: &'static str, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(outcome).or_default() += n;
    }

    /// Prints one EMF document per outcome counted since the last flush.
    pub fn flush(&self, out: &mut impl Write, timestamp_ms: i64) -> io::Result<()> {
        let counts =
            std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner));
        for (outcome, n) in counts {
            writeln!(out, "{}", document(outcome, n, timestamp_ms))?;
        }
        out.flush()
    }
}

fn document(outcome: &str, n: u64, timestamp_ms: i64) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["outcome"]],
                "Metrics": [{"Name": "decisions", "Unit": "Count"}],
            }],
        },
        "outcome": outcome,
        "decisions": n,
    })
}

/// Starts counting decisions for EMF; only the Lambda entry point does.
pub fn enable() -> &'static Emf {
    EMF.get_or_init(Emf::default)
}

/// Counts decisions when EMF is enabled; nothing otherwise.
pub fn record(outcome: &'static str, n: u64) {
    if let Some(emf) = EMF.get() {
        emf.add(outcome, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_per_outcome_then_nothing() {
        let emf = Emf::default();
        emf.add("granted", 1);
        emf.add("evicted", 2);
        emf.add("granted", 1);
        let mut out = Vec::new();
        emf.flush(&mut out, 1_800_000_000_000).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["outcome"], "evicted");
        assert_eq!(lines[0]["decisions"], 2);
        assert_eq!(lines[1]["outcome"], "granted");
        assert_eq!(lines[1]["decisions"], 2);
        let meta = &lines[1]["_aws"];
        assert_eq!(meta["Timestamp"], 1_800_000_000_000_i64);
        assert_eq!(meta["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(meta["CloudWatchMetrics"][0]["Dimensions"][0][0], "outcome");
        assert_eq!(
            meta["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "decisions"
        );

        let mut again = Vec::new();
        emf.flush(&mut again, 0).unwrap();
        assert!(again.is_empty(), "counts are printed once");
    }
}
