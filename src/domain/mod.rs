//! Pure domain logic: no I/O, no clocks but the injected one.

pub mod account;
pub mod clock;
pub mod ids;
pub mod policy;
pub mod rules;

pub use account::{Account, AccountView, EndReason, ExactVec, Lease, LimitSource, Tombstone};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use ids::{ContentId, DeviceId, InvalidId, MAX_ID_LEN, StreamId, UserId};
pub use policy::{Limit, LimitOutOfRange, OnLimit, Policy};
pub use rules::{Grant, HeartbeatDecision, StartDecision, StartRequest};
