//! Each script's KEYS/ARGV layout, called the way the store calls it, and
//! what it leaves in Redis (one key per account, with the right expiry).

use redis::{Commands, Script};
use serde_json::Value;

use crate::support::{shared_url, unique_prefix};

const COMMON: &str = include_str!("../../src/store/redis/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

fn start() -> Script {
    script(include_str!("../../src/store/redis/start.lua"))
}

const T0: i64 = 1_800_000_000_000;

/// ARGV[1..6]: now, default limit, lease ttl ms, on-limit, tombstone ttl ms, max tombstones.
fn common(now: i64) -> Vec<String> {
    [
        now.to_string(),
        "2".into(),
        "90000".into(),
        "reject".into(),
        "900000".into(),
        "100".into(),
    ]
    .to_vec()
}

fn call(con: &mut redis::Connection, s: &Script, key: &str, now: i64, args: &[&str]) -> Value {
    let mut inv = s.key(key);
    for a in common(now) {
        inv.arg(a);
    }
    for a in args {
        inv.arg(*a);
    }
    let raw: String = inv.invoke(con).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn connection() -> redis::Connection {
    redis::Client::open(shared_url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn start_takes_id_device_content_then_terminate_list() {
    let mut con = connection();
    let key = format!("{}:{{alice}}", unique_prefix("layout"));
    let granted = call(&mut con, &start(), &key, T0, &["tv", "tv-device", "movie"]);
    assert_eq!(granted["outcome"], "granted");
    assert_eq!(granted["stream"]["device_id"], "tv-device");
    assert_eq!(granted["stream"]["content_id"], "movie");
    assert_eq!(granted["stream"]["expires_at"], T0 + 90_000);

    let phone = call(
        &mut con,
        &start(),
        &key,
        T0 + 1,
        &["phone", "", "", "", "tv"],
    );
    assert_eq!(phone["outcome"], "granted");
    assert_eq!(phone["evicted"], serde_json::json!(["tv"]));
    assert!(
        phone["stream"].get("device_id").is_none(),
        "'' means no device"
    );

    let stored: String = con.get(&key).unwrap();
    let state: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(state["live"][0]["id"], "phone");
    assert_eq!(state["ended"][0]["reason"], "evicted");
    assert_eq!(state["next_seq"], 2);
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    // Until phone's lease end (T0 + 1 + 90 s) plus 900 s of retention, from now (T0 + 1).
    let expected = 990_000;
    assert!((expected - 1_000..=expected).contains(&pttl), "pttl {pttl}");
}

#[test]
fn heartbeat_end_view_and_set_limit_layouts() {
    let mut con = connection();
    let key = format!("{}:{{bob}}", unique_prefix("layout"));
    let heartbeat = script(include_str!("../../src/store/redis/heartbeat.lua"));
    let end = script(include_str!("../../src/store/redis/end.lua"));
    let view = script(include_str!("../../src/store/redis/view.lua"));
    let set_limit = script(include_str!("../../src/store/redis/set_limit.lua"));

    assert_eq!(
        call(&mut con, &heartbeat, &key, T0, &["s"])["outcome"],
        "unknown"
    );
    assert!(
        !con.exists::<_, bool>(&key).unwrap(),
        "reads of unknown accounts write nothing"
    );

    call(&mut con, &start(), &key, T0, &["s", "", ""]);
    let beat = call(&mut con, &heartbeat, &key, T0 + 60_000, &["s"]);
    assert_eq!(beat["outcome"], "renewed");
    assert_eq!(beat["stream"]["expires_at"], T0 + 150_000);

    let limited = call(&mut con, &set_limit, &key, T0 + 1, &["0"]);
    assert_eq!(limited["revoked"], serde_json::json!(["s"]));
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    assert_eq!(pttl, -1, "an account with a limit override never expires");

    let shown = call(&mut con, &view, &key, T0 + 2, &[]);
    assert_eq!(
        (shown["limit"].as_i64(), shown["source"].as_str()),
        (Some(0), Some("override"))
    );

    let stopped = call(&mut con, &end, &key, T0 + 3, &["s", "stopped"]);
    assert_eq!(stopped["ended"], false, "already revoked");
    assert_eq!(
        call(&mut con, &heartbeat, &key, T0 + 4, &["s"])["reason"],
        "revoked"
    );

    call(&mut con, &set_limit, &key, T0 + 5, &[""]);
    let cleared = call(&mut con, &view, &key, T0 + 6, &[]);
    assert_eq!(
        (cleared["limit"].as_i64(), cleared["source"].as_str()),
        (Some(2), Some("default"))
    );
    assert!(
        con.pttl::<_, i64>(&key).unwrap() > 0,
        "without an override the key expires again"
    );
}

#[test]
fn the_server_clock_is_used_when_no_time_is_given() {
    let mut con = connection();
    let key = format!("{}:{{carol}}", unique_prefix("layout"));
    let (secs, _micros): (i64, i64) = redis::cmd("TIME").query(&mut con).unwrap();
    let script = start();
    let mut inv = script.key(&key);
    let mut args = common(0);
    args[0] = String::new();
    for a in args {
        inv.arg(a);
    }
    inv.arg("s").arg("").arg("");
    let raw: String = inv.invoke(&mut con).unwrap();
    let reply: Value = serde_json::from_str(&raw).unwrap();
    let started = reply["stream"]["started_at"].as_i64().unwrap();
    assert!(
        (started - secs * 1000).abs() < 5_000,
        "started_at {started} vs server {secs}s"
    );
}
