//! The player's routes.

use std::time::Duration;

use serde_json::json;

use crate::support::app;

#[tokio::test]
async fn the_legacy_list_endpoint_answers_with_x_id() {
    let app = app(&[]).await;
    let reply = app.get("/streams").user("legacy-user").send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"user_id": "legacy-user", "limit": 3, "active": 0, "streams": []})
    );
}

#[tokio::test]
async fn a_start_without_a_body_gets_a_generated_stream() {
    let app = app(&[]).await;
    let reply = app.post("/streams").user("u1").send().await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = reply.json();
    let id = body["stream"]["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.headers["location"], format!("/streams/{id}").as_str());
    assert_eq!(body["stream"]["user_id"], "u1");
    assert_eq!(body["stream"]["started_at"], "2027-01-15T08:00:00.000Z");
    assert_eq!(body["stream"]["expires_at"], "2027-01-15T08:01:30.000Z");
    assert_eq!(body["stream"]["heartbeat_interval_s"], 30);
    assert_eq!(
        (body["active"].as_u64(), body["limit"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(body["evicted"], json!([]));
    assert_eq!(app.live("u1").await, [id]);
}

#[tokio::test]
async fn the_fourth_start_is_refused_with_the_live_streams() {
    let app = app(&[]).await;
    for id in ["tv", "phone", "tablet"] {
        let body =
            json!({"stream_id": id, "device_id": format!("dev-{id}"), "content_id": "movie-1"});
        assert_eq!(
            app.post("/streams")
                .user("fam")
                .json(body)
                .send()
                .await
                .status,
            201
        );
    }
    let reply = app
        .post("/streams")
        .user("fam")
        .json(json!({"stream_id": "laptop"}))
        .send()
        .await;
    let problem = reply.problem(409, "stream-limit-reached");
    assert_eq!(
        (problem["limit"].as_u64(), problem["active"].as_u64()),
        (Some(3), Some(3))
    );
    let ids: Vec<_> = problem["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tv", "phone", "tablet"]);
    assert_eq!(problem["streams"][0]["device_id"], "dev-tv");
    assert_eq!(problem["streams"][0]["content_id"], "movie-1");
    assert_eq!(app.live("fam").await.len(), 3);
}

#[tokio::test]
async fn a_retry_answers_200_and_takes_no_slot() {
    let app = app(&[]).await;
    let first = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "s1"}))
        .send()
        .await;
    assert_eq!(first.status, 201);
    app.clock.advance(Duration::from_secs(5));
    let retry = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "s1"}))
        .send()
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(
        retry.json()["stream"]["started_at"],
        first.json()["stream"]["started_at"]
    );
    assert_eq!(retry.json()["active"], 1);
}

#[tokio::test]
async fn terminate_and_device_replacement_are_reported() {
    let app = app(&["--default-limit", "2"]).await;
    let start = |body| app.post("/streams").user("u").json(body).send();
    assert_eq!(
        start(json!({"stream_id": "tv", "device_id": "tv"}))
            .await
            .status,
        201
    );
    assert_eq!(
        start(json!({"stream_id": "ep1", "device_id": "phone"}))
            .await
            .status,
        201
    );

    let next_episode = start(json!({"stream_id": "ep2", "device_id": "phone"})).await;
    assert_eq!(next_episode.status, 201);
    assert_eq!(next_episode.json()["replaced"], json!(["ep1"]));
    assert_eq!(next_episode.json()["evicted"], json!([]));

    let here = start(json!({"stream_id": "laptop", "terminate": ["tv"]})).await;
    assert_eq!(here.status, 201);
    assert_eq!(here.json()["evicted"], json!(["tv"]));

    let tv = app.post("/streams/tv/heartbeat").user("u").send().await;
    assert_eq!(tv.problem(410, "stream-ended")["reason"], "evicted");
    let ep1 = app.post("/streams/ep1/heartbeat").user("u").send().await;
    assert_eq!(ep1.problem(410, "stream-ended")["reason"], "replaced");
}

#[tokio::test]
async fn evict_oldest_mode_grants_and_lists_the_evicted() {
    let app = app(&["--default-limit", "1", "--on-limit", "evict-oldest"]).await;
    app.post("/streams")
        .user("u")
        .json(json!({"stream_id": "old"}))
        .send()
        .await;
    let reply = app
        .post("/streams")
        .user("u")
        .json(json!({"stream_id": "new"}))
        .send()
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json()["evicted"], json!(["old"]));
    assert_eq!(app.live("u").await, ["new"]);
}

#[tokio::test]
async fn heartbeats_renew_and_report_why_a_stream_ended() {
    let app = app(&[]).await;
    app.post("/streams")
        .user("u")
        .json(json!({"stream_id": "s"}))
        .send()
        .await;
    app.clock.advance(Duration::from_secs(60));
    let beat = app.post("/streams/s/heartbeat").user("u").send().await;
    assert_eq!(beat.status, 200);
    assert_eq!(
        beat.json()["stream"]["expires_at"],
        "2027-01-15T08:02:30.000Z"
    );

    app.clock.advance(Duration::from_secs(90));
    let late = app.post("/streams/s/heartbeat").user("u").send().await;
    assert_eq!(late.problem(410, "stream-ended")["reason"], "expired");
    assert!(app.live("u").await.is_empty());
}

#[tokio::test]
async fn unknown_and_foreign_streams_are_404_on_heartbeat() {
    let app = app(&[]).await;
    app.post("/streams")
        .user("alice")
        .json(json!({"stream_id": "mine"}))
        .send()
        .await;
    app.post("/streams/nope/heartbeat")
        .user("alice")
        .send()
        .await
        .problem(404, "stream-not-found");
    app.post("/streams/mine/heartbeat")
        .user("bob")
        .send()
        .await
        .problem(404, "stream-not-found");
}

#[tokio::test]
async fn stop_is_idempotent_and_ignores_other_accounts() {
    let app = app(&[]).await;
    app.post("/streams")
        .user("alice")
        .json(json!({"stream_id": "s"}))
        .send()
        .await;
    assert_eq!(
        app.delete("/streams/s").user("bob").send().await.status,
        204
    );
    assert_eq!(app.live("alice").await, ["s"]);
    assert_eq!(
        app.delete("/streams/s").user("alice").send().await.status,
        204
    );
    assert_eq!(
        app.delete("/streams/s").user("alice").send().await.status,
        204
    );
    let beat = app.post("/streams/s/heartbeat").user("alice").send().await;
    assert_eq!(beat.problem(410, "stream-ended")["reason"], "stopped");
    let again = app
        .post("/streams")
        .user("alice")
        .json(json!({"stream_id": "s"}))
        .send()
        .await;
    assert_eq!(again.status, 201, "a new start may reuse an ended id");
}
