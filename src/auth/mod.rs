//! Who is calling. In `header` mode a trusted gateway names the account in
//! `X-ID`; in `jwt` mode the account is the `sub` of a verified bearer token,
//! whose plan may also carry the account's limit.

use std::sync::Arc;

use crate::domain::{Limit, PlanName, UserId};

mod cache;
mod jwks;
mod jwt;

pub use jwt::{JwtSettings, JwtVerifier};

/// The account a request acts for, and what its token says of its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    /// The limit claimed by the token (`--jwt-limit-claim`), if any.
    pub limit_claim: Option<Limit>,
    /// The plan named by the token (`--jwt-plan-claim`) or the gateway
    /// (`--plan-header`), if any; not yet checked against `--plans`.
    pub plan: Option<PlanName>,
}

impl Caller {
    pub fn new(user: UserId) -> Self {
        Self {
            user,
            limit_claim: None,
            plan: None,
        }
    }
}

/// How requests prove who they are.
#[derive(Clone)]
pub enum Authenticator {
    /// `X-ID`, trusted as sent: only behind a gateway that sets it.
    Header,
    Jwt(Arc<JwtVerifier>),
}

/// Why a bearer token was refused. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("send Authorization: Bearer <token>")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

impl TokenError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        TokenError::Invalid(reason.into())
    }
}

/// Keys or settings that keep JWT identity from starting.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("--auth jwt needs --jwt-secret, --jwt-secret-file or --jwt-jwks")]
    NoKeys,
    #[error("{what}: {reason}")]
    Keys { what: String, reason: String },
    #[error(
        "{0} is set but --auth is header, which trusts X-ID and ignores tokens: add --auth jwt (STREAMGUARD_AUTH=jwt), or remove {0}"
    )]
    JwtFlagWithoutJwt(&'static str),
}
