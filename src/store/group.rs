//! Group commit per account, for a remote store whose decisions are a
//! read and a conditional write (DynamoDB today). Decisions on one account that arrive while
//! one is being decided wait in that account's queue; one task per busy
//! account takes the whole queue, decides it with one read and one
//! transaction (the rules applied to each request in arrival order), and
//! answers each. So a burst of N requests on one account costs a few
//! round trips, not N of them one after another, and an instance never
//! races itself: only other instances make its transactions conflict.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::domain::{
    Account, EndReason, Limit, PlanName, Policy, ResumeDecision, StartDecision, StartRequest,
    StreamId, Timestamp, UserId,
};
use crate::store::StoreError;

/// A decision that may change the account.
pub enum Request {
    Start(StartRequest),
    End(StreamId, EndReason),
    SetLimit(Option<Limit>),
    SetPlan(Option<PlanName>),
    /// A heartbeat that found nothing, with the signed grant's start.
    Resume(StartRequest),
}

#[derive(Debug)]
pub enum Outcome {
    Start(StartDecision),
    End(bool),
    SetLimit(Vec<StreamId>),
    Resume(ResumeDecision),
}

impl Request {
    /// Runs the rules; returns the answer and whether the account changed
    /// in a way that must be written.
    pub fn apply(&self, account: &mut Account, now: Timestamp, policy: &Policy) -> (Outcome, bool) {
        match self {
            Request::Start(req) => {
                let before = account.marks();
                let decision = account.start(req.clone(), now, policy);
                // New claims are recorded whatever the decision, and so is
                // what a plan change revoked.
                let changed = decision.is_grant() || before.moved(account);
                (Outcome::Start(decision), changed)
            }
            Request::End(id, reason) => {
                let live_before = account.live.len();
                let ended = account.end(id, *reason, now, policy);
                // A plan change may also have revoked streams on the way.
                (
                    Outcome::End(ended),
                    ended || account.live.len() != live_before,
                )
            }
            Request::SetLimit(limit) => {
                let before = account.limit;
                let revoked = account.set_limit(*limit, now, policy);
                let changed = before != *limit || !revoked.is_empty();
                (Outcome::SetLimit(revoked), changed)
            }
            Request::Resume(req) => {
                let before = account.marks();
                let decision = account.resume(req.clone(), now, policy);
                // A stream found live after all is renewed by the caller with
                // its own conditional write; only a start is written here.
                let changed = decision.is_grant() || before.moved(account);
                (Outcome::Resume(decision), changed)
            }
            Request::SetPlan(plan) => {
                let before = account.plan_names.clone();
                let revoked = account.set_plan(plan.clone(), now, policy);
                let changed = before != account.plan_names || !revoked.is_empty();
                (Outcome::SetLimit(revoked), changed)
            }
        }
    }
}

pub struct Job {
    change: Request,
    answer: oneshot::Sender<Result<Outcome, StoreError>>,
    /// A set_limit committed in parts answers what its first decision
    /// revoked (later parts find those already gone).
    first: Option<Outcome>,
}

impl Job {
    pub fn new(change: Request) -> (Job, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (answer, receiver) = oneshot::channel();
        let job = Job {
            change,
            answer,
            first: None,
        };
        (job, receiver)
    }

    pub fn change(&self) -> &Request {
        &self.change
    }

    pub fn remember_first(&mut self, outcome: Outcome) {
        if matches!(self.change, Request::SetLimit(_)) && self.first.is_none() {
            self.first = Some(outcome);
        }
    }
}

/// The queues of the accounts being decided right now.
#[derive(Default)]
pub struct Groups {
    queues: Mutex<HashMap<UserId, Vec<Job>>>,
}

impl Groups {
    /// Queues `job`; `true` if nobody decides this account yet, so the
    /// caller must start a task that does ([`Leader::take`] until `None`).
    pub fn enqueue(&self, user: &UserId, job: Job) -> bool {
        let mut queues = self.queues.lock().expect("queue lock");
        match queues.get_mut(user) {
            Some(queue) => {
                queue.push(job);
                false
            }
            None => {
                queues.insert(user.clone(), vec![job]);
                true
            }
        }
    }

    /// Makes the caller the one task deciding `user`'s queue.
    pub fn leader<'a>(&'a self, user: &'a UserId) -> Leader<'a> {
        Leader {
            groups: self,
            user,
            done: false,
        }
    }
}

/// The task deciding one account's queue.
pub struct Leader<'a> {
    groups: &'a Groups,
    user: &'a UserId,
    done: bool,
}

impl Leader<'_> {
    /// Everything queued for the account; `None`, and the account is no
    /// longer being decided, when nothing is.
    pub fn take(&mut self) -> Option<Vec<Job>> {
        let mut queues = self.groups.queues.lock().expect("queue lock");
        let queue = queues.get_mut(self.user)?;
        if queue.is_empty() {
            queues.remove(self.user);
            self.done = true;
            return None;
        }
        Some(std::mem::take(queue))
    }
}

impl Drop for Leader<'_> {
    /// If the task ends early (a panic), the account is released and its
    /// waiting requests fail instead of hanging.
    fn drop(&mut self) {
        if !self.done
            && let Ok(mut queues) = self.groups.queues.lock()
        {
            queues.remove(self.user);
        }
    }
}

/// Answers the first jobs with their outcomes.
pub fn answer(jobs: impl Iterator<Item = Job>, outcomes: Vec<Outcome>) {
    for (mut job, outcome) in jobs.zip(outcomes) {
        let outcome = job.first.take().unwrap_or(outcome);
        // A requester that gave up (timeout) no longer listens.
        let _ = job.answer.send(Ok(outcome));
    }
}

/// Answers every job with the store's failure.
pub fn fail_all(jobs: Vec<Job>, error: &StoreError) {
    for job in jobs {
        let _ = job.answer.send(Err(copy(error)));
    }
}

fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Contended { attempts } => StoreError::Contended {
            attempts: *attempts,
        },
        StoreError::Corrupt { detail } => StoreError::Corrupt {
            detail: detail.clone(),
        },
        StoreError::Config(message) => StoreError::Config(message.clone()),
        StoreError::Unavailable { context, source } => StoreError::Unavailable {
            context,
            source: source.to_string().into(),
        },
    }
}

pub fn mismatch(op: &str, outcome: Outcome) -> StoreError {
    StoreError::Corrupt {
        detail: format!("{op} got the answer of another decision: {outcome:?}"),
    }
}
