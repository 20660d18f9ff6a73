//! The operator's routes.

use serde_json::json;

use crate::support::{ADMIN_TOKEN, app};

const WITH_TOKEN: &[&str] = &["--admin-token", ADMIN_TOKEN];

#[tokio::test]
async fn admin_routes_do_not_exist_without_a_token() {
    use axum::http::Method;
    let app = app(&[]).await;
    // Not for any method: a 405 with `Allow` would show they are there.
    for (method, path) in [
        (Method::GET, "/admin/users/u/streams"),
        (Method::GET, "/admin/users/u/limit"),
        (Method::POST, "/admin/users/u/limit"),
        (Method::PATCH, "/admin/users/u/streams/s"),
        (Method::POST, "/admin/metrics"),
        (Method::GET, "/console/"),
        (Method::POST, "/console/app.js"),
        (Method::POST, "/.well-known/jwks.json"),
    ] {
        let reply = app.call(method.clone(), path).admin().send().await;
        assert!(reply.headers.get("allow").is_none(), "{method} {path}");
        reply.problem(404, "not-found");
    }
    // With the token, the same calls reach the routes.
    let app = crate::support::app(WITH_TOKEN).await;
    let wrong_method = app.post("/admin/users/u/limit").admin().send().await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.headers.get("allow").is_some());
}

#[tokio::test]
async fn admin_routes_need_the_right_bearer_token() {
    let app = app(WITH_TOKEN).await;
    app.get("/admin/users/u/limit")
        .send()
        .await
        .problem(401, "missing-admin-token");
    app.get("/admin/users/u/limit")
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .problem(403, "wrong-admin-token");
    app.put("/admin/users/u/limit")
        .header("authorization", "Bearer wrong")
        .json(json!({"limit": 9}))
        .send()
        .await
        .problem(403, "wrong-admin-token");
    assert_eq!(
        app.get("/admin/users/u/limit").admin().send().await.json()["source"],
        "default"
    );
}

/// Guessing the admin token: a burst of wrong ones gets 403, then every
/// admin request gets 429 (the right token too, so a guess learns nothing)
/// until the budget refills, one failure a second.
#[tokio::test]
async fn wrong_admin_tokens_are_throttled_after_a_burst() {
    let app = app(WITH_TOKEN).await;
    let wrong = |n: usize| format!("Bearer guess-{n}");
    for n in 0..20 {
        app.get("/admin/users/u/limit")
            .header("authorization", &wrong(n))
            .send()
            .await
            .problem(403, "wrong-admin-token");
    }
    let throttled = app
        .get("/admin/users/u/limit")
        .header("authorization", &wrong(20))
        .send()
        .await;
    throttled.problem(429, "rate-limited");
    assert_eq!(throttled.headers["retry-after"], "1");
    let right_meanwhile = app.get("/admin/users/u/limit").admin().send().await;
    right_meanwhile.problem(429, "rate-limited");
    // Player routes are not affected.
    let start = app.post("/streams").user("u").send().await;
    assert_eq!(start.status, 201);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let right = app.get("/admin/users/u/limit").admin().send().await;
    assert_eq!(right.status, 200, "{}", right.text);
}

#[tokio::test]
async fn admins_list_and_revoke_any_accounts_streams() {
    let app = app(WITH_TOKEN).await;
    app.post("/streams")
        .user("viewer")
        .json(json!({"stream_id": "s1"}))
        .send()
        .await;
    let list = app.get("/admin/users/viewer/streams").admin().send().await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["streams"][0]["id"], "s1");
    assert_eq!(list.json()["active"], 1);

    let revoke = app
        .delete("/admin/users/viewer/streams/s1")
        .admin()
        .send()
        .await;
    assert_eq!(revoke.status, 204);
    assert_eq!(
        app.delete("/admin/users/viewer/streams/s1")
            .admin()
            .send()
            .await
            .status,
        204
    );
    let beat = app
        .post("/streams/s1/heartbeat")
        .user("viewer")
        .send()
        .await;
    assert_eq!(beat.problem(410, "stream-ended")["reason"], "revoked");
}

#[tokio::test]
async fn limits_are_read_set_and_cleared() {
    let app = app(WITH_TOKEN).await;
    let path = "/admin/users/vip/limit";
    let set = app.put(path).admin().json(json!({"limit": 1})).send().await;
    assert_eq!(set.status, 200);
    assert_eq!(
        set.json(),
        json!({"user_id": "vip", "limit": 1, "source": "override"})
    );
    assert_eq!(app.get(path).admin().send().await.json()["limit"], 1);

    app.post("/streams")
        .user("vip")
        .json(json!({"stream_id": "a"}))
        .send()
        .await;
    let second = app
        .post("/streams")
        .user("vip")
        .json(json!({"stream_id": "b"}))
        .send()
        .await;
    assert_eq!(second.problem(409, "stream-limit-reached")["limit"], 1);

    assert_eq!(app.delete(path).admin().send().await.status, 204);
    let get = app.get(path).admin().send().await.json();
    assert_eq!(
        (get["limit"].as_u64(), get["source"].as_str()),
        (Some(3), Some("default"))
    );
    assert_eq!(
        app.post("/streams")
            .user("vip")
            .json(json!({"stream_id": "b"}))
            .send()
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn lowering_a_limit_revokes_the_excess_at_once() {
    let app = app(WITH_TOKEN).await;
    for id in ["a", "b", "c"] {
        app.post("/streams")
            .user("fam")
            .json(json!({"stream_id": id}))
            .send()
            .await;
    }
    let set = app
        .put("/admin/users/fam/limit")
        .admin()
        .json(json!({"limit": 1}))
        .send()
        .await;
    assert_eq!(set.json()["revoked"], json!(["c", "b"]));
    assert_eq!(app.live("fam").await, ["a"]);
}

#[tokio::test]
async fn out_of_range_limits_are_400_and_change_nothing() {
    let app = app(WITH_TOKEN).await;
    let path = "/admin/users/u/limit";
    for body in [
        json!({"limit": 1001}),
        json!({"limit": -1}),
        json!({"limit": 2.5}),
    ] {
        let reply = app.put(path).admin().json(body).send().await;
        reply.problem(400, "invalid-request");
    }
    for body in [json!({"limit": "3"}), json!({})] {
        app.put(path)
            .admin()
            .json(body)
            .send()
            .await
            .problem(400, "malformed-json");
    }
    app.put(path)
        .admin()
        .send()
        .await
        .problem(400, "invalid-request");
    assert_eq!(
        app.get(path).admin().send().await.json()["source"],
        "default"
    );
    assert_eq!(
        app.put(path)
            .admin()
            .json(json!({"limit": 0}))
            .send()
            .await
            .status,
        200
    );
    let blocked = app.post("/streams").user("u").send().await;
    let problem = blocked.problem(409, "stream-limit-reached");
    assert_eq!(
        problem["detail"],
        "this account may not start streams (its limit is 0)"
    );
    assert_eq!(
        app.put(path)
            .admin()
            .json(json!({"limit": 1000}))
            .send()
            .await
            .status,
        200
    );
}
