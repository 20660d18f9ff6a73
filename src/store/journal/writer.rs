//! The writer thread: takes what is pending, writes it in one transaction,
//! publishes how far it got, and retries while the disk refuses.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::database::write_batch;
use super::queue::{BehindWrite, Renewal, Renewals, Write};
use super::{Durable, FLUSH_EVERY, Shared};
use crate::domain::{Clock, Timestamp};

/// How often a failed write is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How long a heartbeat may take from reading the clock to noting its
/// renewal (microseconds in practice). `synced_at` is the writer's clock
/// minus this, so a renewal decided before `synced_at` but noted a moment
/// after the writer took the notes cannot be missed.
const NOTE_SLACK: Duration = Duration::from_secs(1);

/// Background rows per transaction while answers wait for it: each row of
/// a large table dirties its own page, so a big chunk would make the fsync
/// they wait for slow (measured in BENCHMARKS.md, durable starts on `file:`).
const BEHIND_WHILE_BUSY: usize = 32;
/// Background rows per transaction when no answer waits.
const BEHIND_WHILE_IDLE: usize = 1024;

/// Appended transactions whose log entries one transaction deletes, at
/// most: each appends one, so the log catches up after a sweep, while a
/// transaction answers wait for never deletes a whole sweep's worth.
const PRUNED_PER_TRANSACTION: usize = 4;

/// The writer thread's state between two transactions.
pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    durable: watch::Sender<Durable>,
    clock: Arc<dyn Clock>,
    lease_ttl: Duration,
    /// No lease can be live past this (renewals and grants move it on), so
    /// `synced_at` need not move beyond it: an idle store stops ticking.
    active_until: Timestamp,
    synced_at: Option<Timestamp>,
    /// What the next transaction writes: taken from `Pending`, and kept
    /// when an attempt fails, for the next one.
    batch: Vec<Write>,
    behind: Vec<BehindWrite>,
    renewals: Renewals,
    /// The notes last taken from `Pending`, whose buffer goes back to it.
    noted: Vec<Renewal>,
    /// Each committed transaction's renewals in `renewal_log`, oldest
    /// first: the `seq` of its last entry and its latest deadline.
    appended: VecDeque<(i64, Timestamp)>,
    /// Log entries with a deadline at or before this may go: a sweep that
    /// began then is over and every write it queued is written by now or
    /// in the next transaction (see [`Writer::prune_through`]).
    prunable: Option<Timestamp>,
    /// The last attempt failed.
    failing: bool,
}

/// What [`Writer::take`] saw of the queues.
struct Taken {
    /// Nobody records any more: write what is left, then stop.
    closing: bool,
    /// Background writes are left for later transactions.
    more_behind: bool,
}

impl Writer {
    pub fn new(
        conn: Connection,
        shared: Arc<Shared>,
        durable: watch::Sender<Durable>,
        clock: Arc<dyn Clock>,
        lease_ttl: Duration,
        log_tail: Option<(i64, Timestamp)>,
    ) -> Self {
        Self {
            conn,
            shared,
            durable,
            active_until: clock.now() + lease_ttl,
            clock,
            lease_ttl,
            synced_at: None,
            batch: Vec::new(),
            behind: Vec::new(),
            renewals: HashMap::new(),
            noted: Vec::new(),
            appended: log_tail.into_iter().collect(),
            prunable: None,
            failing: false,
        }
    }

    /// Writes until the journal closes (or is dropped unclosed).
    pub fn run(mut self) {
        loop {
            let taken = self.take();
            // Every renewal noted before now (less the slack) is in `renewals`.
            let now = self.clock.now();
            if !self.batch.is_empty() || !self.renewals.is_empty() {
                self.active_until = self.active_until.max(now + self.lease_ttl);
            }
            let synced = Timestamp::from_millis(now.as_millis() - NOTE_SLACK.as_millis() as i64);
            let (pruned, through) = self.prune_through(synced);
            match write_batch(
                &mut self.conn,
                &self.batch,
                &self.behind,
                &self.renewals,
                through,
                synced,
            ) {
                Ok(last_seq) => {
                    self.appended.drain(..pruned);
                    let latest = self.renewals.values().max().copied();
                    if let Some(entry) = last_seq.zip(latest) {
                        self.appended.push_back(entry);
                    }
                    self.written(synced);
                }
                Err(e) => {
                    self.refused(&e);
                    if taken.closing {
                        tracing::error!(
                            writes = self.batch.len(),
                            "closing with writes the disk refused; they are lost"
                        );
                        return;
                    }
                }
            }
            if taken.closing && !taken.more_behind {
                return;
            }
        }
    }

    /// Waits for something to write (or, after a failure, for the retry),
    /// then moves it from `Pending` into the next transaction.
    fn take(&mut self) -> Taken {
        let shared = &self.shared;
        let mut pending = shared.pending.lock().unwrap();
        if self.failing {
            if !pending.closing {
                pending = shared.wake.wait_timeout(pending, RETRY_EVERY).unwrap().0;
            }
        } else {
            while pending.writes.is_empty() && pending.behind.is_empty() && !pending.closing {
                let (guard, waited) = shared.wake.wait_timeout(pending, FLUSH_EVERY).unwrap();
                pending = guard;
                let behind = self.synced_at.is_none_or(|at| at <= self.active_until);
                let orphaned = Arc::strong_count(shared) == 1;
                if waited.timed_out() && (!pending.renewals.is_empty() || behind || orphaned) {
                    break;
                }
            }
        }
        self.batch.append(&mut pending.writes);
        if self.behind.is_empty() {
            let chunk = if self.batch.is_empty() {
                BEHIND_WHILE_IDLE
            } else {
                BEHIND_WHILE_BUSY
            };
            self.behind = pending.behind.take(chunk);
        }
        let more_behind = !pending.behind.is_empty();
        if !more_behind {
            // Every write the last complete sweep queued is written, or is
            // in `self.behind` and goes with this transaction.
            self.prunable = pending.swept_at;
        }
        std::mem::swap(&mut pending.renewals, &mut self.noted);
        // Nobody can record any more (the store was dropped unclosed):
        // write what is left, then stop.
        let closing = pending.closing || Arc::strong_count(shared) == 1;
        drop(pending);
        for (user, stream, at) in self.noted.drain(..) {
            let latest = self.renewals.entry((user, stream)).or_insert(at);
            *latest = (*latest).max(at);
        }
        Taken {
            closing,
            more_behind,
        }
    }

    /// How many of the oldest appended transactions' log entries the next
    /// transaction may delete, and the `seq` it deletes through. An entry
    /// may go once its deadline is at or before both `prunable` and the
    /// `synced_at` the transaction writes: its lease then either ran out
    /// and the sweep's write of that is on disk, or was renewed later, and
    /// a restore would bury it only if that later renewal were missing,
    /// which means it was decided after `synced_at`, when the lease was
    /// still live, so a deadline after `synced_at` is on disk for it.
    fn prune_through(&self, synced: Timestamp) -> (usize, Option<i64>) {
        let Some(limit) = self.prunable.map(|p| p.min(synced)) else {
            return (0, None);
        };
        let prunable = self
            .appended
            .iter()
            .take(PRUNED_PER_TRANSACTION)
            .take_while(|(_, latest)| *latest <= limit)
            .count();
        let through = prunable.checked_sub(1).map(|last| self.appended[last].0);
        (prunable, through)
    }

    /// The transaction is on disk: publish its last log number.
    fn written(&mut self, synced: Timestamp) {
        self.synced_at = Some(synced);
        if self.failing {
            tracing::warn!("journal writes succeed again; the store serves again");
            self.failing = false;
        }
        let last = self.batch.last().map(|w| w.lsn);
        if !self.batch.is_empty() {
            metrics::histogram!("streamguard_journal_batch_size").record(self.batch.len() as f64);
        }
        self.durable.send_modify(|d| {
            d.failed = false;
            if let Some(last) = last {
                d.lsn = last;
            }
        });
        self.batch.clear();
        self.behind.clear();
        self.renewals.clear();
    }

    /// The disk refused the transaction: the store refuses decisions until
    /// a retry succeeds.
    fn refused(&mut self, e: &rusqlite::Error) {
        if !self.failing {
            tracing::error!(
                error = %e,
                "journal write failed; the store refuses requests and retries"
            );
            self.failing = true;
            self.durable.send_modify(|d| d.failed = true);
        }
    }
}
