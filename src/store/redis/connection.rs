//! One multiplexed connection to a server (reconnecting by itself) or to
//! a cluster (following slot moves and failovers by itself).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation};

use super::super::StoreError;
use super::super::url::RedisTarget;

/// Bounds on connecting and on one answer; the HTTP layer's
/// `--store-timeout` is usually the tighter bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub async fn open(target: &RedisTarget) -> Result<Self, StoreError> {
        // rustls needs a process-wide crypto provider for rediss://; a
        // second install (another component did it first) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connecting = |e| StoreError::unavailable("connecting to Redis", e);
        if target.cluster {
            let client = ClusterClient::builder(target.nodes.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(connecting)?;
            Ok(Connection::Cluster(
                client.get_async_connection().await.map_err(connecting)?,
            ))
        } else {
            let client = redis::Client::open(target.nodes[0].as_str()).map_err(connecting)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(connecting)?;
            Ok(Connection::Single(manager))
        }
    }

    pub async fn invoke(&self, call: &ScriptInvocation<'_>) -> RedisResult<String> {
        match self.clone() {
            Connection::Single(mut c) => call.invoke_async(&mut c).await,
            Connection::Cluster(mut c) => call.invoke_async(&mut c).await,
        }
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Connection::Single(mut c) => cmd.query_async(&mut c).await,
            Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self.clone() {
            Connection::Single(mut c) => ping.query_async(&mut c).await,
            Connection::Cluster(mut c) => ping.query_async(&mut c).await,
        }
    }
}
