//! Background reclamation for the stores that keep accounts in memory.

use std::sync::Weak;
use std::time::Duration;

use super::table::{AccountTable, Journal};

/// Sweeps the table every `every` until the table is dropped.
pub(crate) fn spawn<J: Journal>(table: Weak<AccountTable<J>>, every: Duration) {
    let mut ticks = crate::ticks::Ticks::new(every, move || table.upgrade());
    tokio::spawn(async move {
        while let Some(table) = ticks.next().await {
            let remaining = tokio::task::spawn_blocking(move || table.sweep()).await;
            if let Ok(accounts) = remaining {
                metrics::gauge!("streamguard_accounts").set(accounts as f64);
            }
        }
    });
}
