//! Random sequences of start / heartbeat / stop / terminate / limit change
//! / clock advance against every in-process store, checked after each step
//! against a small model of the SPEC:
//! - an account never has more live streams than its limit;
//! - a stream that ended (stopped, expired, evicted, replaced, revoked)
//!   never comes back through a heartbeat;
//! - the store's live set is exactly the model's (nothing ends unreported);
//! - a start with room is granted, one without room under `reject` is not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use streamguard::domain::{
    Clock, DeviceId, EndReason, HeartbeatDecision, Lease, Limit, ManualClock, OnLimit, Policy,
    StartDecision, StartRequest, StreamId, Timestamp, UserId,
};
use streamguard::store::{self, StoreUrl, StreamStore};

const USERS: u8 = 2;
const STREAMS: u8 = 6;
const DEFAULT_LIMIT: u32 = 2;
const TTL: Duration = Duration::from_secs(90);

#[derive(Clone, Debug)]
enum Op {
    Start {
        user: u8,
        stream: u8,
        device: Option<u8>,
        terminate: Vec<u8>,
    },
    Heartbeat {
        user: u8,
        stream: u8,
    },
    Stop {
        user: u8,
        stream: u8,
    },
    SetLimit {
        user: u8,
        limit: Option<u32>,
    },
    Advance {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let stream = 0..STREAMS;
    prop_oneof![
        4 => (user.clone(), stream.clone(), proptest::option::of(0u8..3), vec(0..STREAMS, 0..3))
            .prop_map(|(user, stream, device, terminate)| Op::Start { user, stream, device, terminate }),
        4 => (user.clone(), stream.clone()).prop_map(|(user, stream)| Op::Heartbeat { user, stream }),
        2 => (user.clone(), stream.clone()).prop_map(|(user, stream)| Op::Stop { user, stream }),
        1 => (user, proptest::option::of(0u32..4)).prop_map(|(user, limit)| Op::SetLimit { user, limit }),
        2 => (1u64..100).prop_map(|secs| Op::Advance { secs }),
    ]
}

fn user_id(n: u8) -> UserId {
    UserId::parse(&format!("user-{n}")).unwrap()
}

fn stream_id(n: u8) -> StreamId {
    StreamId::parse(&format!("s{n}")).unwrap()
}

/// What the model knows of one live stream.
#[derive(Clone, Debug)]
struct Live {
    device: Option<u8>,
    expires_at: Timestamp,
}

#[derive(Default, Debug)]
struct Account {
    live: BTreeMap<u8, Live>,
    /// Streams that ended and were not started again since.
    ended: BTreeSet<u8>,
    limit: Option<u32>,
}

impl Account {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT) as usize
    }

    fn end(&mut self, stream: u8) {
        self.live.remove(&stream);
        self.ended.insert(stream);
    }

    fn expire(&mut self, now: Timestamp) {
        let gone: Vec<u8> = self
            .live
            .iter()
            .filter(|(_, l)| now >= l.expires_at)
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            self.end(s);
        }
    }

    fn renew(&mut self, stream: u8, lease: &Lease, device: Option<u8>) {
        self.ended.remove(&stream);
        self.live.insert(
            stream,
            Live {
                device,
                expires_at: lease.expires_at,
            },
        );
    }
}

fn number(id: &StreamId) -> u8 {
    id.as_str()[1..].parse().unwrap()
}

async fn run(store: Arc<dyn StreamStore>, clock: ManualClock, on_limit: OnLimit, ops: Vec<Op>) {
    let mut model: BTreeMap<u8, Account> = (0..USERS).map(|u| (u, Account::default())).collect();
    for op in ops {
        for account in model.values_mut() {
            account.expire(clock.now());
        }
        match op {
            Op::Start {
                user,
                stream,
                device,
                terminate,
            } => {
                let account = model.get_mut(&user).unwrap();
                let mut req = StartRequest::new(stream_id(stream));
                req.device_id = device.map(|d| DeviceId::parse(&format!("d{d}")).unwrap());
                req.terminate = terminate.iter().map(|s| stream_id(*s)).collect();
                let was_live = account.live.get(&stream).cloned();
                let freed: BTreeSet<u8> = account
                    .live
                    .iter()
                    .filter(|(s, l)| {
                        terminate.contains(s) || (device.is_some() && l.device == device)
                    })
                    .map(|(s, _)| *s)
                    .collect();
                let room = account.live.len() - freed.len() < account.limit();
                // Under evict-oldest a start always finds room, unless the
                // account is blocked (limit 0).
                let grantable = room || (on_limit == OnLimit::EvictOldest && account.limit() > 0);
                let decision = store.start(&user_id(user), req).await.unwrap();
                match &decision {
                    StartDecision::Granted(grant) => {
                        assert!(was_live.is_none(), "granted a live id again: {decision:?}");
                        assert!(grantable, "granted without room: {decision:?} {account:?}");
                        for id in grant.evicted.iter().chain(&grant.replaced) {
                            let n = number(id);
                            assert!(
                                account.live.contains_key(&n),
                                "ended a stream that was not live: {id}"
                            );
                            account.end(n);
                        }
                        account.renew(stream, &grant.stream, device);
                        assert_eq!(grant.active, account.live.len(), "{decision:?}");
                    }
                    StartDecision::AlreadyLive { stream: lease, .. } => {
                        let was = was_live.expect("already live, but the model has it ended");
                        assert_eq!(was.device, device);
                        account.renew(stream, lease, device);
                    }
                    StartDecision::StreamIdConflict => {
                        let was = was_live.expect("a conflict on a stream that is not live");
                        assert_ne!(was.device, device);
                    }
                    StartDecision::LimitReached(refusal) => {
                        assert!(was_live.is_none());
                        assert!(!grantable, "refused with room: {decision:?} {account:?}");
                        assert_eq!(refusal.first().live.len(), account.live.len());
                    }
                    StartDecision::MissingAttribute { .. } => {
                        panic!("no plan requires an attribute here: {decision:?}")
                    }
                }
            }
            Op::Heartbeat { user, stream } => {
                let account = model.get_mut(&user).unwrap();
                let decision = store
                    .heartbeat(&user_id(user), &stream_id(stream))
                    .await
                    .unwrap();
                match &decision {
                    HeartbeatDecision::Renewed(lease) => {
                        assert!(
                            !account.ended.contains(&stream),
                            "an ended stream came back: s{stream} {account:?}"
                        );
                        let live = account
                            .live
                            .get(&stream)
                            .unwrap_or_else(|| panic!("renewed an unknown stream s{stream}"))
                            .clone();
                        account.renew(stream, lease, live.device);
                    }
                    HeartbeatDecision::Ended(_) | HeartbeatDecision::Unknown => {
                        assert!(
                            !account.live.contains_key(&stream),
                            "a live stream was not renewed: s{stream} {decision:?}"
                        );
                    }
                }
            }
            Op::Stop { user, stream } => {
                let account = model.get_mut(&user).unwrap();
                let ended = store
                    .end(&user_id(user), &stream_id(stream), EndReason::Stopped)
                    .await
                    .unwrap();
                assert_eq!(
                    ended,
                    account.live.contains_key(&stream),
                    "stop of s{stream}"
                );
                if ended {
                    account.end(stream);
                }
            }
            Op::SetLimit { user, limit } => {
                let account = model.get_mut(&user).unwrap();
                let revoked = store
                    .set_limit(&user_id(user), limit.map(|n| Limit::new(n).unwrap()))
                    .await
                    .unwrap();
                account.limit = limit;
                for id in &revoked {
                    let n = number(id);
                    assert!(
                        account.live.contains_key(&n),
                        "revoked a stream that was not live"
                    );
                    account.end(n);
                }
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
        }
        // After every step: the limit holds and the live sets agree.
        let now = clock.now();
        for (user, account) in model.iter_mut() {
            account.expire(now);
            let view = store.view(&user_id(*user)).await.unwrap();
            assert!(
                view.live.len() <= account.limit(),
                "over the limit: {view:?}"
            );
            let live: BTreeSet<u8> = view.live.iter().map(|l| number(&l.id)).collect();
            let expected: BTreeSet<u8> = account.live.keys().copied().collect();
            assert_eq!(live, expected, "user-{user} live streams");
        }
    }
}

fn policy(on_limit: OnLimit) -> Policy {
    Policy {
        default_limit: Limit::new(DEFAULT_LIMIT).unwrap(),
        lease_ttl: TTL,
        on_limit,
        plans: None,
    }
}

fn on_limit() -> impl Strategy<Value = OnLimit> {
    prop_oneof![Just(OnLimit::Reject), Just(OnLimit::EvictOldest)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

/// Cases per store; `PROPTEST_CASES` overrides.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(cases(1000))]
    #[test]
    fn the_memory_store_keeps_the_invariants(on_limit in on_limit(), ops in vec(op(), 1..80)) {
        runtime().block_on(async {
            let clock = clock();
            let store = store::connect(&StoreUrl::Memory, policy(on_limit), Arc::new(clock.clone()))
                .await
                .unwrap();
            run(store, clock, on_limit, ops).await;
        });
    }
}

#[cfg(feature = "file")]
proptest! {
    #![proptest_config(cases(200))]
    #[test]
    fn the_file_store_keeps_the_invariants(on_limit in on_limit(), ops in vec(op(), 1..80)) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = clock();
            let url = StoreUrl::File(dir.path().join("data"));
            let store = store::connect(&url, policy(on_limit), Arc::new(clock.clone()))
                .await
                .unwrap();
            run(store.clone(), clock, on_limit, ops).await;
            store.close().await.unwrap();
        });
    }
}
