//! Background reclamation for the stores that keep accounts in memory.

use std::sync::Weak;
use std::time::Duration;

use super::table::{AccountTable, Journal};

/// Sweeps the table every `every` until the table is dropped.
pub(crate) fn spawn<J: Journal>(table: Weak<AccountTable<J>>, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(table) = table.upgrade() else { return };
            let remaining = tokio::task::spawn_blocking(move || table.sweep()).await;
            if let Ok(accounts) = remaining {
                metrics::gauge!("streamguard_accounts").set(accounts as f64);
            }
        }
    });
}
