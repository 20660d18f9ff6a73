//! HTTP/1.1 keep-alive connections to the server under test, one request at
//! a time each: the smallest client that hyper offers, so the tool spends
//! its core on load rather than on itself.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::jwt;

/// How requests say who they are.
#[derive(Clone)]
pub enum Identity {
    /// `X-ID: <account>`.
    Header,
    /// `Authorization: Bearer <HS256 JWT with sub = account>`.
    Jwt(jwt::Signer),
}

/// One request, as the simulation describes it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub account: String,
    pub body: Option<String>,
    /// Further headers (a heartbeat's grant and lease secret).
    pub headers: Vec<(&'static str, String)>,
}

/// A status (0 when the connection failed) and the body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

pub struct Connection {
    addr: SocketAddr,
    host: String,
    identity: Identity,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(addr: SocketAddr, identity: Identity) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            identity,
            sender: None,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().unwrap())
    }

    /// Sends `call` and reads the whole answer; a broken connection is
    /// status 0 and is reopened for the next call.
    pub async fn send(&mut self, call: &Call) -> Answer {
        match self.try_send(call).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sender = None;
                Answer {
                    status: 0,
                    body: Bytes::new(),
                }
            }
        }
    }

    async fn try_send(&mut self, call: &Call) -> anyhow::Result<Answer> {
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header("host", &self.host);
        req = match &self.identity {
            Identity::Header => req.header("x-id", &call.account),
            Identity::Jwt(signer) => req.header(
                "authorization",
                format!("Bearer {}", signer.token(&call.account)),
            ),
        };
        for (name, value) in &call.headers {
            req = req.header(*name, value);
        }
        let body = match &call.body {
            Some(json) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(json.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        let sender = self.connect().await?;
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }
}
