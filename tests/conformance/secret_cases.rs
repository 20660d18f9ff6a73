//! The store contract for lease secrets and resumes: a lease started with
//! a secret renews only for that secret; a forgotten stream comes back from
//! its grant's start, an ended one never does.

use streamguard::domain::{
    ContentId, DeviceId, EndReason, HeartbeatDecision, OnLimit, ResumeDecision, SecretHash,
    StartDecision, StartRequest, StreamId, Tags,
};

use crate::cases::user;
use crate::harness::{Make, policy};

fn sid(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

fn secret(s: &str) -> SecretHash {
    SecretHash::of(&format!("{s:A<22}")).unwrap()
}

fn bound(id: &str, key: &str) -> StartRequest {
    StartRequest {
        secret: Some(secret(key)),
        device_id: Some(DeviceId::parse("tv").unwrap()),
        ..StartRequest::new(sid(id))
    }
}

pub async fn a_lease_with_a_secret_renews_only_for_that_secret(make: Make) {
    let h = make(policy(1, OnLimit::Reject)).await;
    let u = user("secret");
    assert!(matches!(
        h.store.start(&u, bound("tv-1", "tv")).await.unwrap(),
        StartDecision::Granted(_)
    ));
    // Another screen that learned the id from a 409 cannot ride on it.
    for presented in [None, Some(secret("phone"))] {
        assert_eq!(
            h.store
                .heartbeat_with(&u, &sid("tv-1"), presented.as_ref())
                .await
                .unwrap(),
            HeartbeatDecision::Unknown
        );
    }
    match h
        .store
        .heartbeat_with(&u, &sid("tv-1"), Some(&secret("tv")))
        .await
        .unwrap()
    {
        HeartbeatDecision::Renewed(lease) => {
            assert_eq!(lease.secret.as_deref(), Some(&secret("tv")))
        }
        other => panic!("{other:?}"),
    }
    // A retry must repeat the secret; without it, it is another player.
    assert_eq!(
        h.store
            .start(
                &u,
                StartRequest {
                    secret: None,
                    ..bound("tv-1", "tv")
                }
            )
            .await
            .unwrap(),
        StartDecision::StreamIdConflict
    );
    assert_eq!(
        h.store.start(&u, bound("tv-1", "phone")).await.unwrap(),
        StartDecision::StreamIdConflict
    );
    assert!(matches!(
        h.store.start(&u, bound("tv-1", "tv")).await.unwrap(),
        StartDecision::AlreadyLive { .. }
    ));
    // Ending another device needs no secret (terminate, admin revoke, stop).
    assert!(
        h.store
            .end(&u, &sid("tv-1"), EndReason::Stopped)
            .await
            .unwrap()
    );
}

pub async fn a_forgotten_stream_resumes_from_its_grant_and_an_ended_one_never(make: Make) {
    let h = make(policy(2, OnLimit::Reject)).await;
    let u = user("resume");
    let from_grant = |id: &str| StartRequest {
        content_id: Some(ContentId::parse("movie").unwrap()),
        tags: Tags::from_pairs([("quality", "hd")]).unwrap(),
        ..bound(id, "tv")
    };
    // Nothing known of it: started again as the grant says.
    match h.store.resume(&u, from_grant("a")).await.unwrap() {
        ResumeDecision::Start(StartDecision::Granted(g)) => {
            assert_eq!(g.stream.content_id.unwrap().as_str(), "movie");
            assert_eq!(g.stream.tags.get("quality"), Some("hd"));
            assert_eq!(g.stream.secret.as_deref(), Some(&secret("tv")));
        }
        other => panic!("{other:?}"),
    }
    // Live after all: a heartbeat, for the secret only.
    assert!(matches!(
        h.store.resume(&u, from_grant("a")).await.unwrap(),
        ResumeDecision::Heartbeat(HeartbeatDecision::Renewed(_))
    ));
    let stranger = StartRequest {
        secret: Some(secret("x")),
        ..from_grant("a")
    };
    assert_eq!(
        h.store.resume(&u, stranger).await.unwrap(),
        ResumeDecision::Heartbeat(HeartbeatDecision::Unknown)
    );
    // Remembered as ended: never revived.
    h.store
        .end(&u, &sid("a"), EndReason::Revoked)
        .await
        .unwrap();
    assert_eq!(
        h.store.resume(&u, from_grant("a")).await.unwrap(),
        ResumeDecision::Heartbeat(HeartbeatDecision::Ended(EndReason::Revoked))
    );
    // No room: refused like a start, the limit holds.
    for id in ["b", "c"] {
        h.store.start(&u, StartRequest::new(sid(id))).await.unwrap();
    }
    assert!(matches!(
        h.store.resume(&u, from_grant("d")).await.unwrap(),
        ResumeDecision::Start(StartDecision::LimitReached(_))
    ));
    assert_eq!(h.store.view(&u).await.unwrap().live.len(), 2);
}
