//! `streamguard-load` against the real binary (memory store): a short run
//! of shared accounts that exercises grants, denials, `terminate` and stops
//! must pass its own audit and report it all in the JSON result; with the
//! service's plans, its audit checks every rule — and fails when the
//! service enforces a rule or a max the tool's plans do not say.
#![cfg(feature = "load")]

use std::process::Command;

use serde_json::Value;

#[path = "common/server.rs"]
mod server;

use server::Server;

#[test]
fn a_short_viewer_run_passes_the_audit_and_reports_every_outcome() {
    let server = Server::start(&["--store", "memory"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (out, plot) = (dir.path().join("run.json"), dir.path().join("run.svg"));
    let status = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", &server.url("")])
        .args([
            "--viewers",
            "80",
            "--heartbeat",
            "250ms",
            "--session",
            "1500ms",
        ])
        .args([
            "--share",
            "0.6",
            "--devices-per-account",
            "5",
            "--terminate",
            "0.5",
        ])
        .args([
            "--duration",
            "4s",
            "--connections",
            "8",
            "--quiet",
            "--seed",
            "7",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(&plot)
        .status()
        .unwrap();
    assert!(status.success(), "the tool failed: {status}");

    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["audit"]["violations"], 0, "{result:#}");
    let n = |k: &str| {
        result[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {result:#}"))
    };
    assert!(n("requests") > 500, "{result:#}");
    assert!(n("grants") > 50);
    assert!(
        n("denials") > 0,
        "5 devices on a limit of 3 are denied sometimes"
    );
    assert!(n("terminates_sent") > 0 && n("evictions") > 0, "{result:#}");
    for kind in ["start", "heartbeat", "stop"] {
        assert!(result["by_kind"][kind].as_u64().unwrap() > 0, "{kind}");
    }
    assert!(result["status"]["201"].as_u64().unwrap() > 0);
    assert!(result["status"].get("0").is_none(), "no failed connection");
    assert!(result["series"].as_array().unwrap().len() >= 3);
    let p = &result["latency"];
    assert!(p["p50_ms"].as_f64().unwrap() <= p["p99_ms"].as_f64().unwrap());
    assert!(p["p99_ms"].as_f64().unwrap() <= p["max_ms"].as_f64().unwrap());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("throughput"));
}

#[test]
fn jwt_mode_identifies_with_hs256_tokens() {
    let secret = "load-tool-test-secret-of-32-bytes-or-more";
    let server = Server::start(
        &["--store", "memory", "--auth", "jwt", "--jwt-secret", secret],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("jwt.json");
    let status = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", &server.url("")])
        .args(["--viewers", "20", "--heartbeat", "200ms", "--session", "1s"])
        .args(["--duration", "2s", "--connections", "4", "--quiet"])
        .args(["--jwt-secret", secret])
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(dir.path().join("jwt.svg"))
        .status()
        .unwrap();
    assert!(status.success());
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["config"]["identity"], "jwt");
    assert!(result["grants"].as_u64().unwrap() > 0, "{result:#}");
    assert!(result["status"].get("401").is_none(), "{result:#}");
}

/// With `--grant-key` every viewer heartbeats with its latest grant and its
/// lease secret; a store that keeps everything resumes nothing, and the
/// audit passes (tests/failover.rs loses the store under this load).
#[test]
fn viewers_heartbeat_with_their_grant_and_lease_secret() {
    let key = format!(
        "{}/tests/fixtures/keys/grant-p256.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = Server::start(
        &[
            "--store",
            "memory",
            "--grant-key",
            &key,
            "--require-lease-secret",
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grants.json");
    let status = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", &server.url("")])
        .args(["--viewers", "30", "--heartbeat", "200ms", "--session", "1s"])
        .args(["--duration", "2s", "--connections", "4", "--quiet"])
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(dir.path().join("grants.svg"))
        .status()
        .unwrap();
    assert!(status.success());
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(result["grants"].as_u64().unwrap() > 0, "{result:#}");
    assert!(result["status"].get("400").is_none(), "{result:#}");
    assert!(result["by_kind"]["heartbeat"].as_u64().unwrap() > 0);
    assert_eq!(result["resumed"]["count"], 0, "{result:#}");
    assert_eq!(result["unavailable"]["count"], 0, "{result:#}");
    assert_eq!(result["audit"]["violations"], 0, "{result:#}");
}

const FIXTURE_PLANS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plans.toml");

/// A short run with plans: the tool reads `tool_plans`, the service
/// enforces `service_plans`; accounts take the plans in turn (`X-Plan`).
/// The tool's exit status and its JSON result.
fn run_with_plans(service_plans: &str, tool_plans: &str) -> (bool, Value) {
    let server = Server::start(
        &[
            "--store",
            "memory",
            "--plans",
            service_plans,
            "--plan-header",
            "X-Plan",
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plans.json");
    let status = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", &server.url("")])
        .args(["--plans", tool_plans, "--plan-header", "X-Plan"])
        .args([
            "--viewers",
            "90",
            "--heartbeat",
            "250ms",
            "--session",
            "1500ms",
        ])
        .args([
            "--share",
            "1",
            "--devices-per-account",
            "5",
            "--terminate",
            "0.5",
        ])
        .args([
            "--duration",
            "4s",
            "--connections",
            "8",
            "--quiet",
            "--seed",
            "11",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(dir.path().join("plans.svg"))
        .status()
        .unwrap();
    let result = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (status.success(), result)
}

/// The fixture's plans with `edit` applied, written next to the test.
fn edited_plans(dir: &tempfile::TempDir, edit: impl Fn(String) -> String) -> String {
    let text = edit(std::fs::read_to_string(FIXTURE_PLANS).unwrap());
    let path = dir.path().join("service-plans.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn with_the_services_plans_every_rule_refuses_sometimes_and_none_is_exceeded() {
    let (ok, result) = run_with_plans(FIXTURE_PLANS, FIXTURE_PLANS);
    assert!(ok, "{result:#}");
    assert_eq!(result["audit"]["violations"], 0, "{result:#}");
    assert!(result["grants"].as_u64().unwrap() > 50, "{result:#}");
    assert!(
        result["status"].get("400").is_none(),
        "every required tag is sent: {result:#}"
    );
    let by_rule = &result["denials_by_rule"];
    for rule in ["account", "same-title", "discovery"] {
        assert!(
            by_rule[rule].as_u64().unwrap_or(0) > 0,
            "{rule}: {result:#}"
        );
    }
    assert!(result["evictions"].as_u64().unwrap() > 0, "{result:#}");
}

#[test]
fn the_audit_fails_when_the_service_enforces_a_rule_the_plans_do_not_have() {
    let dir = tempfile::tempdir().unwrap();
    // The service's standard plan allows one stream per title, under a
    // rule name the tool's file does not know.
    let service = edited_plans(&dir, |t| {
        t.replace(
            r#"{ name = "same-title", per = "content_id", max = 2 },
]

[plans.premium]"#,
            r#"{ name = "same-title", per = "content_id", max = 2 },
  { name = "one-title", per = "content_id", max = 1 },
]

[plans.premium]"#,
        )
    });
    assert!(
        std::fs::read_to_string(&service)
            .unwrap()
            .contains("one-title")
    );
    let (ok, result) = run_with_plans(&service, FIXTURE_PLANS);
    assert!(!ok, "{result:#}");
    let examples = result["audit"]["examples"].to_string();
    assert!(
        examples.contains(r#"rule \"one-title\", which plan standard does not have"#),
        "{examples}"
    );
}

#[test]
fn the_audit_fails_when_the_service_lets_a_rule_scope_exceed_its_max() {
    let dir = tempfile::tempdir().unwrap();
    // The service grants 4 of a title where the plans say 2: an over-grant
    // by rule, though never above the account limit.
    let service = edited_plans(&dir, |t| {
        t.replace(
            r#"per = "content_id", max = 2"#,
            r#"per = "content_id", max = 4"#,
        )
    });
    let (ok, result) = run_with_plans(&service, FIXTURE_PLANS);
    assert!(!ok, "{result:#}");
    let examples = result["audit"]["examples"].to_string();
    assert!(
        examples.contains("in the scope of rule same-title over its max of 2"),
        "{examples}"
    );
    assert!(!examples.contains("over its limit"), "{examples}");
}

#[test]
fn targets_other_than_this_machine_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", "http://192.0.2.1:8080", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only against this machine"));
}
