//! The deploy artifacts, read as files:
//! - the AWS SAM template in deploy/aws: it parses, it holds the resources
//!   docs/operations.md names with the settings the store relies on, and every
//!   reference in it points at something that exists (deploying it is not
//!   tested here);
//! - the Grafana dashboard and the Prometheus alerts: they parse, and every
//!   metric and label they query is one the code records, so renaming a
//!   metric cannot silently empty a panel or an alert; every alert has a
//!   test case where it fires and one where it does not (deploy/check.sh
//!   runs those with promtool, and checks the systemd unit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_norway::Value;

const TEMPLATE: &str = include_str!("../deploy/aws/template.yaml");
/// Where the deployment is documented.
const DOCS: &str = include_str!("../docs/operations.md");

fn template() -> Value {
    serde_norway::from_str(TEMPLATE).expect("the template is YAML")
}

/// The value under a tag such as `!Ref`, if `v` is tagged so.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("the template has no resource {name}"))
}

#[test]
fn names_the_resources_and_parameters_the_docs_describe() {
    let t = template();
    assert_eq!(t["Transform"], "AWS::Serverless-2016-10-31");
    for (name, kind) in [
        ("StreamsTable", "AWS::DynamoDB::Table"),
        ("StreamsApi", "AWS::Serverless::HttpApi"),
        ("StreamguardFunction", "AWS::Serverless::Function"),
        ("StreamguardLogs", "AWS::Logs::LogGroup"),
    ] {
        assert_eq!(resource(&t, name)["Type"], kind, "{name}");
        assert!(DOCS.contains(name), "docs/operations.md describes {name}");
    }
    for parameter in ["DefaultLimit", "LeaseTtl", "OnLimit", "AdminToken"] {
        assert!(t["Parameters"].get(parameter).is_some(), "{parameter}");
        assert!(
            DOCS.contains(parameter),
            "docs/operations.md describes {parameter}"
        );
    }
}

#[test]
fn the_table_is_what_the_store_checks_for() {
    let t = template();
    let table = &resource(&t, "StreamsTable")["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(table["KeySchema"].as_sequence().unwrap().len(), 2);
    assert_eq!(table["KeySchema"][0]["AttributeName"], "pk");
    assert_eq!(table["KeySchema"][0]["KeyType"], "HASH");
    assert_eq!(table["KeySchema"][1]["AttributeName"], "sk");
    assert_eq!(table["KeySchema"][1]["KeyType"], "RANGE");
    for (i, name) in ["pk", "sk"].into_iter().enumerate() {
        assert_eq!(table["AttributeDefinitions"][i]["AttributeName"], name);
        assert_eq!(table["AttributeDefinitions"][i]["AttributeType"], "S");
    }
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"], "ttl");
    assert_eq!(table["TimeToLiveSpecification"]["Enabled"], true);
}

#[test]
fn the_function_is_an_arm64_custom_runtime_with_least_privilege() {
    let t = template();
    let function = &resource(&t, "StreamguardFunction")["Properties"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Handler"], "bootstrap");
    assert_eq!(function["Architectures"][0], "arm64");
    let store = tagged(
        &function["Environment"]["Variables"]["STREAMGUARD_STORE"],
        "!Sub",
    )
    .and_then(Value::as_str)
    .expect("the store URL names the table");
    assert!(store.starts_with("dynamodb://${StreamsTable}"), "{store}");

    let statements = function["Policies"][0]["Statement"].as_sequence().unwrap();
    assert_eq!(statements.len(), 1);
    let actions: BTreeSet<&str> = statements[0]["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ])
    );
    assert_eq!(
        tagged(&statements[0]["Resource"], "!GetAtt").and_then(Value::as_str),
        Some("StreamsTable.Arn"),
        "only this table"
    );

    let events = function["Events"].as_mapping().unwrap();
    assert!(!events.is_empty());
    for (_, event) in events {
        assert_eq!(event["Type"], "HttpApi");
        assert_eq!(
            tagged(&event["Properties"]["ApiId"], "!Ref").and_then(Value::as_str),
            Some("StreamsApi")
        );
    }
}

#[test]
fn every_reference_points_at_a_parameter_or_resource() {
    let t = template();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for section in ["Parameters", "Resources"] {
        for (name, _) in t[section].as_mapping().unwrap() {
            known.insert(name.as_str().unwrap().to_owned());
        }
    }
    let mut references = Vec::new();
    collect_references(&t, &mut references);
    assert!(references.len() >= 8, "{references:?}");
    for name in references {
        assert!(
            name.starts_with("AWS::") || known.contains(&name),
            "{name} is referenced but not defined"
        );
    }
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Tagged(t) => {
            match (t.tag.to_string().as_str(), &t.value) {
                ("!Ref", Value::String(name)) => out.push(name.clone()),
                ("!GetAtt", Value::String(path)) => {
                    out.push(path.split('.').next().unwrap().to_owned());
                }
                ("!Sub", Value::String(text)) => {
                    for part in text.split("${").skip(1) {
                        out.push(part.split(['}', '.']).next().unwrap().to_owned());
                    }
                }
                _ => {}
            }
            collect_references(&t.value, out);
        }
        Value::Sequence(items) => items.iter().for_each(|i| collect_references(i, out)),
        Value::Mapping(map) => map.values().for_each(|i| collect_references(i, out)),
        _ => {}
    }
}

#[test]
fn the_api_defaults_to_verified_jwt_identity() {
    let t = template();
    let auth = &t["Parameters"]["AuthMode"];
    assert_eq!(
        auth["Default"], "jwt",
        "internet-facing: never header mode by default"
    );
    let allowed: Vec<&str> = auth["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["jwt", "header"]);
    for parameter in ["JwtJwksUrl", "JwtIssuer", "JwtAudience", "JwtLimitClaim"] {
        assert!(t["Parameters"].get(parameter).is_some(), "{parameter}");
        assert!(
            DOCS.contains(parameter),
            "docs/operations.md describes {parameter}"
        );
    }

    let env = &resource(&t, "StreamguardFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(
        tagged(&env["STREAMGUARD_AUTH"], "!Ref").unwrap(),
        "AuthMode"
    );
    let jwks = tagged(&env["STREAMGUARD_JWT_JWKS"], "!If").expect("JWKS set in jwt mode");
    assert_eq!(jwks[0], "IsJwt");
    assert_eq!(tagged(&jwks[1], "!Ref").unwrap(), "JwtJwksUrl");

    // Deploying in jwt mode without keys is refused before anything runs.
    let rule = &t["Rules"]["JwtNeedsKeys"];
    let condition = tagged(&rule["RuleCondition"], "!Equals").unwrap();
    assert_eq!(tagged(&condition[0], "!Ref").unwrap(), "AuthMode");
    assert_eq!(condition[1], "jwt");
    let assertion = tagged(&rule["Assertions"][0]["Assert"], "!Not").unwrap();
    let empty = tagged(&assertion[0], "!Equals").unwrap();
    assert_eq!(tagged(&empty[0], "!Ref").unwrap(), "JwtJwksUrl");

    // Every condition an !If names is defined.
    let conditions = t["Conditions"].as_mapping().unwrap();
    for (name, value) in env.as_mapping().unwrap() {
        if let Some(branches) = tagged(value, "!If") {
            let condition = branches[0].as_str().unwrap();
            assert!(
                conditions.contains_key(condition),
                "{name:?} uses undefined condition {condition}"
            );
        }
    }
}

const DASHBOARD: &str = include_str!("../deploy/grafana/streamguard.json");
const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");
const ALERT_TESTS: &str = include_str!("../deploy/prometheus/alerts.test.yml");

/// Labels Prometheus adds to every series; the code never records them.
const SCRAPE_LABELS: [&str; 2] = ["job", "instance"];

/// What the code records: each metric's macro (`counter`, `gauge`,
/// `histogram`) and label names, read from the `metrics::…!("name", "label"
/// => …)` calls under src/.
fn recorded_metrics() -> BTreeMap<String, (&'static str, BTreeSet<String>)> {
    let mut metrics = BTreeMap::new();
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let code = std::fs::read_to_string(&path).unwrap();
        for kind in ["counter", "gauge", "histogram"] {
            for (at, _) in code.match_indices(&format!("{kind}!(")) {
                let call = macro_arguments(&code[at + kind.len() + 2..]);
                let Some(name) = call.trim_start().strip_prefix('"') else {
                    continue;
                };
                let name = name.split('"').next().unwrap().to_owned();
                // Each `=>` follows a label name in quotes.
                let parts: Vec<&str> = call.split("=>").collect();
                let labels: BTreeSet<String> = parts[..parts.len() - 1]
                    .iter()
                    .filter_map(|before| before.trim_end().strip_suffix('"'))
                    .filter_map(|before| before.rsplit('"').next())
                    .map(str::to_owned)
                    .collect();
                let entry = metrics.entry(name).or_insert((kind, BTreeSet::new()));
                entry.1.extend(labels);
            }
        }
    }
    metrics
}

/// The text up to the `)` that closes a macro call starting at `text`.
fn macro_arguments(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth == 0 {
            return &text[..i];
        }
    }
    panic!("unclosed macro call: {text}")
}

/// The series names a recorded metric appears under on /metrics, each
/// with the metric's name. Histograms whose name ends in `_seconds` get
/// buckets (telemetry.rs); the exporter renders the others as summaries.
fn exported_series(
    metrics: &BTreeMap<String, (&'static str, BTreeSet<String>)>,
) -> BTreeMap<String, String> {
    let mut series = BTreeMap::new();
    for (name, (kind, _)) in metrics {
        let suffixes: &[&str] = match *kind {
            "histogram" if has_buckets(name) => &["_bucket", "_sum", "_count"],
            "histogram" => &["", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            series.insert(format!("{name}{suffix}"), name.clone());
        }
    }
    series
}

/// Whether the exporter gives histogram `name` buckets (series `_bucket`,
/// label `le`) rather than a summary (label `quantile`), read from the
/// `Matcher::Full`/`Matcher::Suffix` calls in src/telemetry/recorder.rs.
fn has_buckets(name: &str) -> bool {
    let telemetry = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/recorder.rs");
    let source = std::fs::read_to_string(telemetry).unwrap();
    let matched = |pattern: &str| {
        source
            .split(pattern)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let full = matched("Matcher::Full(\"");
    let suffixes = matched("Matcher::Suffix(\"");
    assert!(
        !full.is_empty() && !suffixes.is_empty(),
        "bucket matchers found"
    );
    full.iter().any(|f| f == name) || suffixes.iter().any(|s| name.ends_with(s.as_str()))
}

/// Every word of `expr` that names a streamguard series.
fn series_in(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("streamguard_"))
        .map(str::to_owned)
        .collect()
}

/// Label names an expression groups by (`by (…)`) or matches on (`{l="…"}`).
fn labels_in(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for group in expr.split("by (").skip(1) {
        let names = group.split(')').next().unwrap();
        labels.extend(names.split(',').map(|l| l.trim().to_owned()));
    }
    for selector in expr.split('{').skip(1) {
        let matchers = selector.split('}').next().unwrap();
        for matcher in matchers.split(',') {
            let name = matcher.split(['=', '!']).next().unwrap().trim();
            labels.insert(name.to_owned());
        }
    }
    labels.retain(|l| !l.is_empty());
    labels
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is JSON")
}

/// Every query of the dashboard: its panels' and its variables'.
fn dashboard_queries() -> Vec<String> {
    let d = dashboard();
    let mut queries: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_owned()
        })
        .collect();
    for variable in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["definition"].as_str() {
            queries.push(q.to_owned());
        }
    }
    queries
}

fn alert_rules() -> Vec<Value> {
    let rules: Value = serde_norway::from_str(ALERTS).expect("the alert rules are YAML");
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// Asserts each query names only series and labels the code records, and
/// returns the metrics they use.
fn check_queries(source: &str, queries: &[String]) -> BTreeSet<String> {
    let metrics = recorded_metrics();
    let series = exported_series(&metrics);
    let mut used = BTreeSet::new();
    for query in queries {
        let names = series_in(query);
        assert!(
            !names.is_empty(),
            "{source}: no streamguard metric in {query}"
        );
        let mut labels: BTreeSet<String> = SCRAPE_LABELS.map(str::to_owned).into();
        for name in names {
            let metric = series.get(&name).unwrap_or_else(|| {
                panic!("{source}: {name} is not a series the code exports ({query})")
            });
            labels.extend(metrics[metric].1.iter().cloned());
            if metrics[metric].0 == "histogram" {
                let extra = if has_buckets(metric) {
                    "le"
                } else {
                    "quantile"
                };
                labels.insert(extra.to_owned());
            }
            used.insert(metric.clone());
        }
        for label in labels_in(query) {
            assert!(
                labels.contains(&label),
                "{source}: label {label} is not recorded on the metrics of {query}"
            );
        }
    }
    used
}

#[test]
fn the_metrics_are_read_from_the_code() {
    // The readers above find what the code records; if they found nothing,
    // the checks below would pass on any name.
    let metrics = recorded_metrics();
    assert_eq!(metrics["streamguard_http_requests_total"].0, "counter");
    assert_eq!(
        metrics["streamguard_http_requests_total"].1,
        BTreeSet::from(["method", "route", "status"].map(str::to_owned))
    );
    assert_eq!(metrics["streamguard_journal_batch_size"].0, "histogram");
    let series = exported_series(&metrics);
    assert!(series.contains_key("streamguard_store_call_duration_seconds_bucket"));
    assert!(series.contains_key("streamguard_journal_batch_size_bucket"));
    assert!(!series.contains_key("streamguard_journal_batch_size"));
    assert!(!has_buckets("streamguard_some_new_histogram"));
    assert_eq!(
        labels_in(r#"sum by (op, kind) (rate(x{job=~"a", status!="503"}[5m]))"#),
        BTreeSet::from(["op", "kind", "job", "status"].map(str::to_owned))
    );
}

#[test]
fn the_dashboard_queries_metrics_the_code_records() {
    let d = dashboard();
    assert_eq!(d["uid"], "streamguard");
    let panels = d["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }
    let used = check_queries("dashboard", &dashboard_queries());
    for metric in [
        "streamguard_http_requests_total",
        "streamguard_decisions_total",
        "streamguard_store_call_duration_seconds",
        "streamguard_store_errors_total",
        "streamguard_unenforced_total",
        "streamguard_store_conflicts_total",
        "streamguard_journal_batch_size",
    ] {
        assert!(used.contains(metric), "the dashboard shows {metric}");
    }
}

#[test]
fn the_alerts_query_metrics_the_code_records() {
    let rules = alert_rules();
    let queries: Vec<String> = rules
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    let used = check_queries("alerts", &queries);
    for metric in [
        "streamguard_store_errors_total",
        "streamguard_unenforced_total",
        "streamguard_http_requests_total",
        "streamguard_store_conflicts_total",
        "streamguard_journal_batch_size",
    ] {
        assert!(used.contains(metric), "an alert watches {metric}");
    }
    for rule in &rules {
        assert!(rule["labels"]["severity"].is_string(), "{rule:?}");
        assert!(rule["annotations"]["summary"].is_string(), "{rule:?}");
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let tests: Value = serde_norway::from_str(ALERT_TESTS).expect("the alert tests are YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
        .collect();
    for rule in alert_rules() {
        let alert = rule["alert"].as_str().unwrap();
        let expected: Vec<usize> = cases
            .iter()
            .filter(|c| c["alertname"] == alert)
            .map(|c| c["exp_alerts"].as_sequence().map_or(0, Vec::len))
            .collect();
        assert!(
            expected.iter().any(|&n| n > 0),
            "{alert} has no firing case"
        );
        assert!(
            expected.contains(&0),
            "{alert} has no case where it stays quiet"
        );
    }
}
