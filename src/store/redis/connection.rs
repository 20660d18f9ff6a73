//! One multiplexed connection to a server (reconnecting by itself), to
//! a cluster (following slot moves and failovers by itself), or to the
//! primary that Redis Sentinel names (asked again after a failure, so a
//! promoted replica is followed).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult,
    ScriptInvocation,
};

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
    Sentinel(Arc<Sentinel>),
}

/// The Sentinels and the connection to the primary they last named.
pub(super) struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    primary: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Sentinel {
    /// The primary's connection: the current one, or a new one to the
    /// server the Sentinels name now.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut primary = self.primary.lock().await;
        if let Some(c) = primary.as_ref() {
            return Ok(c.clone());
        }
        let client = self.client.lock().await.async_get_client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *primary = Some(c.clone());
        Ok(c)
    }

    /// After an error that says the primary is gone or is no longer the
    /// primary, forgets it: the next call asks the Sentinels again.
    async fn failed<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result
            && lost_primary(e)
        {
            *self.primary.lock().await = None;
        }
        result
    }
}

fn lost_primary(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}

impl Connection {
    pub async fn open(target: &RedisTarget) -> Result<Self, StoreError> {
        // rustls needs a process-wide crypto provider for rediss://; a
        // second install (another component did it first) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connecting = |e| StoreError::unavailable("connecting to Redis", e);
        if let Some(master) = &target.sentinel {
            // The URL's credentials and TLS are the Sentinels'; the primary
            // is reached with the same ones.
            let first = target.nodes[0]
                .as_str()
                .into_connection_info()
                .map_err(connecting)?;
            let mut node = SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(first.redis_settings().clone());
            if let redis::ConnectionAddr::TcpTls { insecure, .. } = first.addr() {
                node = node.set_tls_mode(if *insecure {
                    redis::TlsMode::Insecure
                } else {
                    redis::TlsMode::Secure
                });
            }
            let client = SentinelClient::build(
                target.nodes.clone(),
                master,
                Some(node),
                SentinelServerType::Master,
            )
            .map_err(connecting)?;
            let sentinel = Sentinel {
                client: tokio::sync::Mutex::new(client),
                primary: tokio::sync::Mutex::new(None),
            };
            sentinel.connection().await.map_err(connecting)?;
            Ok(Connection::Sentinel(Arc::new(sentinel)))
        } else if target.cluster {
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
            Connection::Sentinel(s) => {
                let result = match s.connection().await {
                    Ok(mut c) => call.invoke_async(&mut c).await,
                    Err(e) => Err(e),
                };
                s.failed(result).await
            }
        }
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Connection::Single(mut c) => cmd.query_async(&mut c).await,
            Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
            Connection::Sentinel(s) => {
                let result = match s.connection().await {
                    Ok(mut c) => cmd.query_async(&mut c).await,
                    Err(e) => Err(e),
                };
                s.failed(result).await
            }
        }
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self.clone() {
            Connection::Single(mut c) => ping.query_async(&mut c).await,
            Connection::Cluster(mut c) => ping.query_async(&mut c).await,
            Connection::Sentinel(s) => {
                let result = match s.connection().await {
                    Ok(mut c) => ping.query_async(&mut c).await,
                    Err(e) => Err(e),
                };
                s.failed(result).await
            }
        }
    }
}
