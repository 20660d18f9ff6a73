//! Pure domain logic: no I/O, no clocks but the injected one.

pub mod account;
pub mod clock;
pub mod ids;
pub mod pace;
pub mod plan;
pub mod policy;
pub mod rules;
pub mod secret;
pub mod tags;

pub use account::{
    Account, AccountView, EndReason, ExactVec, Lease, LimitSource, ThinList, Tombstone,
};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use ids::{ContentId, DeviceId, InvalidId, MAX_ID_LEN, PlanName, StreamId, TagValue, UserId};
pub use pace::{LeasePace, Pace, PaceInstant, Paced, Rate, Rates, Verdict};
pub use plan::{ACCOUNT_RULE, Attr, Plan, PlanBook, PlanSource, Plans, Rule, Scope};
pub use policy::{Limit, LimitOutOfRange, OnLimit, Policy};
pub use rules::{
    Admission, Conflict, HeartbeatDecision, Marks, Refusal, ResumeDecision, StartDecision,
    StartRequest,
};
pub use secret::{InvalidSecret, SecretHash};
pub use tags::{InvalidTags, TagName, Tags};

#[cfg(test)]
mod plan_tests;
