//! Plans and rules over HTTP: tags on starts, the 409 that names each
//! refusing rule, `missing-attribute`, the admin plan routes, plans from a
//! token claim or a gateway header, and the file's reload.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, app};
use crate::tokens::{SECRET, claims, hs256};

/// The plans of the README.
const PLANS: &str = include_str!("../fixtures/plans.toml");

fn write_plans(dir: &Path, text: &str) -> String {
    let path = dir.join("plans.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn plans_app(dir: &tempfile::TempDir, extra: &[&str]) -> TestApp {
    let path = write_plans(dir.path(), PLANS);
    let mut args = vec!["--plans", &path, "--admin-token", ADMIN_TOKEN];
    args.extend_from_slice(extra);
    app(&args).await
}

async fn start(app: &TestApp, user: &str, body: Value) -> crate::support::Reply {
    app.post("/streams").user(user).json(body).send().await
}

fn ids(streams: &Value) -> Vec<&str> {
    streams
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn tags_are_shown_wherever_streams_are_listed_and_fixed_for_life() {
    let app = app(&["--admin-token", ADMIN_TOKEN]).await;
    let body = json!({"stream_id": "s1", "content_id": "match-7",
        "tags": {"channel": "eurosport", "kind": "live", "quality": "uhd"}});
    let r = start(&app, "u", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tags = json!({"channel": "eurosport", "kind": "live", "quality": "uhd"});
    assert_eq!(r.json()["stream"]["tags"], tags);
    let list = app.get("/streams").user("u").send().await.json();
    assert_eq!(list["streams"][0]["tags"], tags);
    let admin = app
        .get("/admin/users/u/streams")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(admin["streams"][0]["tags"], tags);
    assert_eq!(start(&app, "u", body).await.status, 200, "a retry");
    for other in [
        json!({"stream_id": "s1", "content_id": "match-7", "tags": {"channel": "dmax"}}),
        json!({"stream_id": "s1", "content_id": "match-8",
            "tags": {"channel": "eurosport", "kind": "live", "quality": "uhd"}}),
    ] {
        start(&app, "u", other)
            .await
            .problem(409, "stream-id-conflict");
    }
    // A stream without tags shows none.
    let r = start(&app, "u", json!({"stream_id": "s2"})).await;
    assert!(r.json()["stream"].get("tags").is_none());
}

#[tokio::test]
async fn bad_tags_are_400_naming_the_field_and_change_nothing() {
    let app = app(&[]).await;
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("t{i}"), json!("v"))).collect();
    for (tags, field) in [
        (json!({"Channel": "x"}), "tags"),
        (json!({"content_id": "x"}), "tags"),
        (json!({"channel": "a b"}), "tags.channel"),
        (json!({"channel": 7}), "tags.channel"),
        (json!(["channel"]), "tags"),
        (Value::Object(nine), "tags"),
    ] {
        let r = start(&app, "u", json!({"tags": tags})).await;
        let body = r.problem(400, "invalid-request");
        assert!(
            body["detail"].as_str().unwrap().starts_with(field),
            "{tags}: {body}"
        );
    }
    assert!(app.live("u").await.is_empty());
}

#[tokio::test]
async fn a_refusal_names_the_first_refusing_rule_and_lists_every_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &[]).await;
    let r = app
        .put("/admin/users/u/plan")
        .admin()
        .json(json!({"plan": "premium"}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let uhd = |id: &str, ch: &str| json!({"stream_id": id, "content_id": id, "tags": {"channel": ch, "quality": "uhd"}});
    assert_eq!(start(&app, "u", uhd("a", "dmax")).await.status, 201);
    assert_eq!(start(&app, "u", uhd("b", "zdf")).await.status, 201);
    let r = start(&app, "u", uhd("c", "tlc")).await;
    let body = r.problem(409, "stream-limit-reached");
    assert_eq!(body["rule"], "uhd");
    assert_eq!(
        (body["limit"].as_u64(), body["active"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(ids(&body["streams"]), ["a", "b"]);
    let conflicts: Vec<(&str, u64, Vec<&str>)> = body["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["rule"].as_str().unwrap(),
                c["limit"].as_u64().unwrap(),
                ids(&c["streams"]),
            )
        })
        .collect();
    assert_eq!(
        conflicts,
        [("uhd", 2, vec!["a", "b"]), ("discovery", 1, vec!["a"])]
    );
    assert_eq!(body["conflicts"][0]["active"], 2);
    assert!(body["detail"].as_str().unwrap().contains("rule uhd"));
    // The account limit is reported as the rule `account`.
    let hd = |id: &str, ch: &str| json!({"stream_id": id, "tags": {"channel": ch}});
    assert_eq!(start(&app, "u", hd("d", "ard")).await.status, 201);
    assert_eq!(start(&app, "u", hd("e", "rtl")).await.status, 201);
    let body = start(&app, "u", hd("f", "ndr"))
        .await
        .problem(409, "stream-limit-reached");
    assert_eq!(body["rule"], "account");
    assert_eq!(body["conflicts"].as_array().unwrap().len(), 1);
    let metrics = app.get("/metrics").send().await.text;
    assert!(metrics.contains(r#"streamguard_rule_refusals_total{rule="discovery"}"#));
}

#[tokio::test]
async fn a_required_attribute_missing_is_400_naming_rule_and_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &[]).await;
    app.put("/admin/users/u/plan")
        .admin()
        .json(json!({"plan": "premium"}))
        .send()
        .await;
    let body = start(&app, "u", json!({"content_id": "m"}))
        .await
        .problem(400, "missing-attribute");
    assert_eq!(
        (&body["rule"], &body["attribute"]),
        (&json!("per-channel"), &json!("channel"))
    );
    assert!(app.live("u").await.is_empty());
}

#[tokio::test]
async fn the_admin_plan_routes_set_read_and_clear_with_usage() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &[]).await;
    let plan = app.get("/admin/users/u/plan").admin().send().await.json();
    assert_eq!(plan["plan"], "standard");
    assert_eq!(plan["source"], "default");
    assert_eq!(plan["limit"], 3);
    for id in ["a", "b", "c"] {
        start(&app, "u", json!({"stream_id": id, "content_id": "m"})).await;
    }
    let plan = app.get("/admin/users/u/plan").admin().send().await.json();
    assert_eq!(
        plan["rules"],
        json!([{"name": "same-title", "max": 2, "in_use": 2}])
    );
    // A downgrade revokes the newest streams at once.
    let r = app
        .put("/admin/users/u/plan")
        .admin()
        .json(json!({"plan": "basic"}))
        .send()
        .await;
    let body = r.json();
    assert_eq!(
        (body["plan"].as_str(), body["source"].as_str()),
        (Some("basic"), Some("override"))
    );
    assert_eq!(body["revoked"], json!(["b"]));
    assert_eq!(app.live("u").await, ["a"]);
    let r = app.post("/streams/b/heartbeat").user("u").send().await;
    assert_eq!(r.problem(410, "stream-ended")["reason"], "revoked");
    // Unknown plans, and no body, are 400 and change nothing.
    for body in [json!({"plan": "gold"}), json!({"plan": "not a name"})] {
        app.put("/admin/users/u/plan")
            .admin()
            .json(body)
            .send()
            .await
            .problem(400, "invalid-request");
    }
    app.put("/admin/users/u/plan")
        .admin()
        .send()
        .await
        .problem(400, "invalid-request");
    assert_eq!(
        app.delete("/admin/users/u/plan")
            .admin()
            .send()
            .await
            .status,
        204
    );
    let plan = app.get("/admin/users/u/plan").admin().send().await.json();
    assert_eq!(plan["source"], "default");
    // Without the admin token, as every admin route.
    app.get("/admin/users/u/plan")
        .send()
        .await
        .problem(401, "missing-admin-token");
}

#[tokio::test]
async fn a_jwt_plan_claim_names_the_plan_and_an_unknown_one_refuses_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(
        &dir,
        &[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--jwt-plan-claim",
            "tier",
        ],
    )
    .await;
    let token = |tier: Value| {
        let mut c = claims("carol");
        c["tier"] = tier;
        hs256(c)
    };
    let basic = token(json!("basic"));
    let r = app.post("/streams").bearer(&basic).send().await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = app
        .post("/streams")
        .bearer(&basic)
        .send()
        .await
        .problem(409, "stream-limit-reached");
    assert_eq!(
        (&body["rule"], &body["limit"]),
        (&json!("account"), &json!(1))
    );
    let plan = app
        .get("/admin/users/carol/plan")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(
        (plan["plan"].as_str(), plan["source"].as_str()),
        (Some("basic"), Some("claim"))
    );
    for bad in [json!("gold"), json!(3), json!("a b")] {
        let r = app
            .post("/streams")
            .bearer(&token(bad.clone()))
            .send()
            .await;
        r.problem(401, "invalid-token");
    }
    assert_eq!(app.live("carol").await.len(), 1);
}

#[tokio::test]
async fn a_gateway_plan_header_names_the_plan_and_an_unknown_one_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &["--plan-header", "x-plan"]).await;
    let with_plan = |plan: &str| app.post("/streams").user("dave").header("x-plan", plan);
    assert_eq!(with_plan("basic").send().await.status, 201);
    with_plan("basic")
        .send()
        .await
        .problem(409, "stream-limit-reached");
    with_plan("gold")
        .send()
        .await
        .problem(400, "invalid-request");
    app.post("/streams")
        .user("dave")
        .header("x-plan", "basic")
        .header("x-plan", "premium")
        .send()
        .await
        .problem(400, "invalid-request");
    // Without the header, the recorded claim still applies.
    app.post("/streams")
        .user("dave")
        .send()
        .await
        .problem(409, "stream-limit-reached");
}

#[tokio::test]
async fn an_edited_plans_file_applies_within_a_second_and_a_broken_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &[]).await;
    for id in ["a", "b"] {
        let r = start(&app, "u", json!({"stream_id": id, "content_id": "m"})).await;
        assert_eq!(r.status, 201);
    }
    write_plans(
        dir.path(),
        "default = \"standard\"\n[plans.standard]\nlimit = 3\nrules = [ { name = \"same-title\", per = \"content_id\", max = 1 } ]\n",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let plan = app.get("/admin/users/u/plan").admin().send().await.json();
        if plan["rules"][0]["max"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The tightened rule applies at the account's next decision.
    let body = start(&app, "u", json!({"content_id": "m"}))
        .await
        .problem(409, "stream-limit-reached");
    assert_eq!(body["rule"], "same-title");
    assert_eq!(app.live("u").await, ["a"], "the excess was revoked");
    // A broken file keeps the plans in use.
    write_plans(dir.path(), "default = [");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let plan = app.get("/admin/users/u/plan").admin().send().await.json();
    assert_eq!(plan["rules"][0]["max"], 1);
}

#[tokio::test]
async fn the_plan_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = |args: &[&str]| crate::support::config(args);
    let clock = std::sync::Arc::new(crate::support::clock());
    for args in [
        vec!["--plan-header", "x-plan"],
        vec![
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--jwt-plan-claim",
            "tier",
        ],
    ] {
        let error = streamguard::app_state(&config(&args), clock.clone())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("--plans"), "{error}");
    }
    let broken = write_plans(dir.path(), "default = \"x\"\n[plans.basic]\nlimit = 1\n");
    let error = streamguard::app_state(&config(&["--plans", &broken]), clock.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("plans.toml") && error.contains("line 1"),
        "{error}"
    );
}

#[tokio::test]
async fn the_document_lists_the_plans_an_admin_may_assign() {
    let dir = tempfile::tempdir().unwrap();
    let app = plans_app(&dir, &[]).await;
    let doc = app.get("/openapi.json").send().await.json();
    let names = &doc["components"]["schemas"]["PlanBody"]["properties"]["plan"]["enum"];
    assert_eq!(names, &json!(["basic", "premium", "standard"]));
    // Without --plans the one plan is `default`: naming it changes nothing.
    let plain = app_without_plans().await;
    let doc = plain.get("/openapi.json").send().await.json();
    let names = &doc["components"]["schemas"]["PlanBody"]["properties"]["plan"]["enum"];
    assert_eq!(names, &json!(["default"]));
    let r = plain
        .put("/admin/users/u/plan")
        .admin()
        .json(json!({"plan": "default"}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["plan"], "default");
    let tags = &doc["components"]["schemas"]["StartBody"]["properties"]["tags"]["oneOf"][1];
    assert_eq!(tags["maxProperties"], 8, "{tags}");
}

async fn app_without_plans() -> TestApp {
    app(&["--admin-token", ADMIN_TOKEN]).await
}
