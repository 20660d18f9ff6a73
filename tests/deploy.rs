//! The AWS SAM template in deploy/aws: it parses, it holds the resources the
//! README names with the settings the store relies on, and every reference
//! in it points at something that exists. (Deploying it is not tested here.)

use std::collections::BTreeSet;

use serde_norway::Value;

const TEMPLATE: &str = include_str!("../deploy/aws/template.yaml");
const README: &str = include_str!("../README.md");

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
fn names_the_resources_and_parameters_the_readme_describes() {
    let t = template();
    assert_eq!(t["Transform"], "AWS::Serverless-2016-10-31");
    for (name, kind) in [
        ("StreamsTable", "AWS::DynamoDB::Table"),
        ("StreamsApi", "AWS::Serverless::HttpApi"),
        ("StreamguardFunction", "AWS::Serverless::Function"),
        ("StreamguardLogs", "AWS::Logs::LogGroup"),
    ] {
        assert_eq!(resource(&t, name)["Type"], kind, "{name}");
        assert!(README.contains(name), "the README describes {name}");
    }
    for parameter in ["DefaultLimit", "LeaseTtl", "OnLimit", "AdminToken"] {
        assert!(t["Parameters"].get(parameter).is_some(), "{parameter}");
        assert!(
            README.contains(parameter),
            "the README describes {parameter}"
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
