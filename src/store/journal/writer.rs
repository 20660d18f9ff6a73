//! The writer thread: takes what is pending, writes it in one transaction,
//! publishes how far it got, and retries while the disk refuses.

use std::collections::HashMap;
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
            match write_batch(
                &mut self.conn,
                &self.batch,
                &self.behind,
                &self.renewals,
                synced,
            ) {
                Ok(()) => self.written(synced),
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
