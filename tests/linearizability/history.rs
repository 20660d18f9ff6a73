//! What a client did and saw: one operation on one account, with the
//! instants it was invoked and answered, and the pure rules' answer to the
//! same input (the sequential model), compared modulo timestamps.

use std::fmt;

use streamguard::domain::{
    Account, DeviceId, EndReason, HeartbeatDecision, Limit, Policy, StartDecision, StartRequest,
    StreamId, Timestamp,
};
use streamguard::store::{StoreError, StreamStore};

#[derive(Clone, Debug)]
pub enum Input {
    Start {
        stream: StreamId,
        device: Option<DeviceId>,
        terminate: Vec<StreamId>,
        plan: Option<Limit>,
    },
    Heartbeat(StreamId),
    Stop(StreamId),
    /// `DELETE /admin/users/{user}/streams/{id}`.
    Revoke(StreamId),
    SetLimit(Option<Limit>),
    View,
}

/// An answer with its timestamps left out: the stores stamp leases with
/// their own clock, the model with the round's `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Granted {
        evicted: Vec<String>,
        replaced: Vec<String>,
        active: usize,
    },
    AlreadyLive {
        active: usize,
    },
    LimitReached {
        live: Vec<String>,
    },
    Conflict,
    Renewed,
    HeartbeatEnded(EndReason),
    HeartbeatUnknown,
    /// Stop or revoke: whether the stream was live.
    Ended(bool),
    /// A limit change: the streams it revoked.
    LimitSet {
        revoked: Vec<String>,
    },
    Live {
        limit: u32,
        live: Vec<String>,
    },
    /// The store failed: the operation may or may not have taken effect.
    Failed(String),
}

/// One completed operation. Times are nanoseconds since the run began.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub account: usize,
    pub input: Input,
    pub output: Output,
    pub call: u64,
    pub ret: u64,
    /// The store clock's time during this operation's round.
    pub now: Timestamp,
}

impl Op {
    pub fn failed(&self) -> bool {
        matches!(self.output, Output::Failed(_))
    }
}

fn names(ids: impl IntoIterator<Item = StreamId>) -> Vec<String> {
    let mut v: Vec<String> = ids.into_iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn start_request(input: &Input) -> StartRequest {
    let Input::Start {
        stream,
        device,
        terminate,
        plan,
    } = input
    else {
        unreachable!("a start input")
    };
    StartRequest {
        device_id: device.clone(),
        terminate: terminate.clone(),
        limit_claim: *plan,
        ..StartRequest::new(stream.clone())
    }
}

fn start_output(d: StartDecision) -> Output {
    match d {
        StartDecision::Granted(g) => Output::Granted {
            evicted: names(g.evicted),
            replaced: names(g.replaced),
            active: g.active,
        },
        StartDecision::AlreadyLive { active, .. } => Output::AlreadyLive { active },
        StartDecision::LimitReached(refusal) => Output::LimitReached {
            live: names(refusal.first().live.iter().map(|l| l.id.clone())),
        },
        StartDecision::StreamIdConflict => Output::Conflict,
        StartDecision::MissingAttribute { .. } => {
            unreachable!("the workload's plans require nothing")
        }
    }
}

fn heartbeat_output(d: HeartbeatDecision) -> Output {
    match d {
        HeartbeatDecision::Renewed(_) => Output::Renewed,
        HeartbeatDecision::Ended(r) => Output::HeartbeatEnded(r),
        HeartbeatDecision::Unknown => Output::HeartbeatUnknown,
    }
}

/// The sequential model: the pure rules on one account.
pub fn apply(acc: &mut Account, input: &Input, now: Timestamp, policy: &Policy) -> Output {
    match input {
        Input::Start { .. } => start_output(acc.start(start_request(input), now, policy)),
        Input::Heartbeat(id) => heartbeat_output(acc.heartbeat(id, now, policy)),
        Input::Stop(id) => Output::Ended(acc.end(id, EndReason::Stopped, now, policy)),
        Input::Revoke(id) => Output::Ended(acc.end(id, EndReason::Revoked, now, policy)),
        Input::SetLimit(limit) => Output::LimitSet {
            revoked: names(acc.set_limit(*limit, now, policy)),
        },
        Input::View => {
            let view = acc.view(now, policy);
            Output::Live {
                limit: view.limit.get(),
                live: names(view.live.into_iter().map(|l| l.id)),
            }
        }
    }
}

/// The same input through a store.
pub async fn run(
    store: &dyn StreamStore,
    user: &streamguard::domain::UserId,
    input: &Input,
) -> Output {
    let out: Result<Output, StoreError> = async {
        Ok(match input {
            Input::Start { .. } => start_output(store.start(user, start_request(input)).await?),
            Input::Heartbeat(id) => heartbeat_output(store.heartbeat(user, id).await?),
            Input::Stop(id) => Output::Ended(store.end(user, id, EndReason::Stopped).await?),
            Input::Revoke(id) => Output::Ended(store.end(user, id, EndReason::Revoked).await?),
            Input::SetLimit(limit) => Output::LimitSet {
                revoked: names(store.set_limit(user, *limit).await?),
            },
            Input::View => {
                let view = store.view(user).await?;
                Output::Live {
                    limit: view.limit.get(),
                    live: names(view.live.into_iter().map(|l| l.id)),
                }
            }
        })
    }
    .await;
    out.unwrap_or_else(|e| Output::Failed(e.to_string()))
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Start {
                stream,
                device,
                terminate,
                plan,
            } => {
                write!(f, "start {stream}")?;
                if let Some(d) = device {
                    write!(f, " device={d}")?;
                }
                if !terminate.is_empty() {
                    let t: Vec<_> = terminate.iter().map(|s| s.as_str()).collect();
                    write!(f, " terminate=[{}]", t.join(","))?;
                }
                if let Some(p) = plan {
                    write!(f, " plan={}", p.get())?;
                }
                Ok(())
            }
            Input::Heartbeat(id) => write!(f, "heartbeat {id}"),
            Input::Stop(id) => write!(f, "stop {id}"),
            Input::Revoke(id) => write!(f, "admin revoke {id}"),
            Input::SetLimit(Some(l)) => write!(f, "set limit {}", l.get()),
            Input::SetLimit(None) => write!(f, "clear limit"),
            Input::View => write!(f, "list"),
        }
    }
}
