//! `streamguard-load` against the real binary (memory store): a short run
//! of shared accounts that exercises grants, denials, `terminate` and stops
//! must pass its own audit and report it all in the JSON result.
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

#[test]
fn targets_other_than_this_machine_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamguard-load"))
        .args(["--target", "http://192.0.2.1:8080", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only against this machine"));
}
