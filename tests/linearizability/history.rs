//! What a client did and saw: one operation on one account, with the
//! instants it was invoked and answered, and the pure rules' answer to the
//! same input (the sequential model), compared modulo timestamps.

use std::fmt;

use streamguard::domain::{
    Account, ContentId, DeviceId, EndReason, HeartbeatDecision, Limit, PlanName, Policy,
    ResumeDecision, SecretHash, StartDecision, StartRequest, StreamId, Tags, Timestamp,
};
use streamguard::store::{StoreError, StreamStore};

#[derive(Clone, Debug)]
pub enum Input {
    Start {
        stream: StreamId,
        device: Option<DeviceId>,
        /// What the plan's rules count: a title and a channel tag.
        content: Option<ContentId>,
        channel: Option<&'static str>,
        /// The player's lease secret, if it chose one.
        secret: Option<SecretHash>,
        terminate: Vec<StreamId>,
        /// The token's limit claim.
        plan: Option<Limit>,
        /// The plan the token or gateway names.
        claimed: Option<PlanName>,
    },
    /// A heartbeat, with the lease secret it presents.
    Heartbeat(StreamId, Option<SecretHash>),
    /// A heartbeat the store did not know, resumed from its grant: a
    /// start's terms (no terminate list, no claims).
    Resume(Box<Input>),
    /// `PUT` or `DELETE /admin/users/{user}/plan`.
    SetPlan(Option<PlanName>),
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
        /// Every refusing rule, in order.
        rules: Vec<String>,
        /// The first one's streams.
        live: Vec<String>,
    },
    /// A rule requires an attribute the start lacks.
    Missing(String),
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
        content,
        channel,
        secret,
        terminate,
        plan,
        claimed,
    } = input
    else {
        unreachable!("a start input")
    };
    StartRequest {
        device_id: device.clone(),
        content_id: content.clone(),
        tags: Tags::from_pairs(channel.map(|c| ("channel", c))).unwrap(),
        secret: *secret,
        terminate: terminate.clone(),
        limit_claim: *plan,
        plan: claimed.clone(),
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
            rules: refusal
                .conflicts
                .iter()
                .map(|c| c.rule.to_string())
                .collect(),
            live: names(refusal.first().live.iter().map(|l| l.id.clone())),
        },
        StartDecision::StreamIdConflict => Output::Conflict,
        StartDecision::MissingAttribute { rule, .. } => Output::Missing(rule.to_string()),
    }
}

fn resume_output(d: ResumeDecision) -> Output {
    match d {
        ResumeDecision::Heartbeat(h) => heartbeat_output(h),
        ResumeDecision::Start(s) => start_output(s),
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
        Input::Heartbeat(id, secret) => {
            heartbeat_output(acc.heartbeat_with(id, secret.as_ref(), now, policy))
        }
        Input::Resume(start) => resume_output(acc.resume(start_request(start), now, policy)),
        Input::SetPlan(plan) => Output::LimitSet {
            revoked: names(acc.set_plan(plan.clone(), now, policy)),
        },
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
            Input::Heartbeat(id, secret) => {
                heartbeat_output(store.heartbeat_with(user, id, secret.as_ref()).await?)
            }
            Input::Resume(start) => resume_output(store.resume(user, start_request(start)).await?),
            Input::SetPlan(plan) => Output::LimitSet {
                revoked: names(store.set_plan(user, plan.clone()).await?),
            },
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
                content,
                channel,
                secret,
                terminate,
                plan,
                claimed,
            } => {
                write!(f, "start {stream}")?;
                if let Some(d) = device {
                    write!(f, " device={d}")?;
                }
                if let Some(c) = content {
                    write!(f, " content={c}")?;
                }
                if let Some(c) = channel {
                    write!(f, " channel={c}")?;
                }
                if let Some(s) = secret {
                    write!(f, " secret={}", &s.to_hex()[..6])?;
                }
                if let Some(p) = claimed {
                    write!(f, " claims plan {p}")?;
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
            Input::Heartbeat(id, None) => write!(f, "heartbeat {id}"),
            Input::Heartbeat(id, Some(s)) => {
                write!(f, "heartbeat {id} secret={}", &s.to_hex()[..6])
            }
            Input::Resume(start) => write!(f, "resume ({start})"),
            Input::SetPlan(Some(p)) => write!(f, "set plan {p}"),
            Input::SetPlan(None) => write!(f, "clear plan"),
            Input::Stop(id) => write!(f, "stop {id}"),
            Input::Revoke(id) => write!(f, "admin revoke {id}"),
            Input::SetLimit(Some(l)) => write!(f, "set limit {}", l.get()),
            Input::SetLimit(None) => write!(f, "clear limit"),
            Input::View => write!(f, "list"),
        }
    }
}
