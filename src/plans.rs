//! The `--plans` file: named plans (an account-wide limit and rules over
//! stream attributes) in TOML, re-read within a second of a change.
//!
//! ```toml
//! default = "standard"
//!
//! [plans.standard]
//! limit = 3
//! rules = [ { name = "same-title", per = "content_id", max = 2 } ]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::domain::{Attr, Limit, Plan, PlanBook, PlanName, Plans, Rule, Scope, TagValue};

/// How often the file is checked for changes.
const FILE_REFRESH: Duration = Duration::from_secs(1);

/// A plans file that does not load, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("--plans {path}: {reason}")]
pub struct PlansError {
    pub path: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    default: Spanned<String>,
    plans: BTreeMap<String, Spanned<PlanDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanDef {
    limit: Spanned<i64>,
    #[serde(default)]
    rules: Vec<Spanned<RuleDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: Spanned<String>,
    per: Option<Spanned<String>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    max: Spanned<i64>,
    #[serde(default)]
    required: bool,
}

/// Parses a plans document; errors name the line and the field.
pub fn parse(text: &str) -> Result<Plans, String> {
    let file: FileDef = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    let at = |span: std::ops::Range<usize>, what: String| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!("line {line}: {what}")
    };
    let bounded = |n: &Spanned<i64>, field: &str| {
        u32::try_from(*n.get_ref())
            .ok()
            .and_then(|n| Limit::new(n).ok())
            .ok_or_else(|| at(n.span(), format!("{field} must be from 0 to 1000")))
    };
    let mut plans = Vec::new();
    for (name, def) in &file.plans {
        let span = def.span();
        let def = def.get_ref();
        let plan_name =
            PlanName::parse(name).map_err(|e| at(span.clone(), format!("plans.{name}: {e}")))?;
        let limit = bounded(&def.limit, &format!("plans.{name}.limit"))?;
        let mut rules: Vec<Rule> = Vec::new();
        for rule in &def.rules {
            let rule_span = rule.span();
            let rule = rule.get_ref();
            let rule_name = rule.name.get_ref();
            let field = |f: &str| format!("plans.{name}.rules[{rule_name}].{f}");
            if rule_name.is_empty()
                || rule_name.len() > 64
                || !rule_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(at(
                    rule.name.span(),
                    format!(
                        "plans.{name}: rule name {rule_name:?} must be 1-64 characters of A-Z a-z 0-9 - _"
                    ),
                ));
            }
            if rule_name == crate::domain::ACCOUNT_RULE {
                return Err(at(
                    rule.name.span(),
                    format!(
                        "plans.{name}: `account` names the account-wide limit; pick another rule name"
                    ),
                ));
            }
            if rules.iter().any(|r| &*r.name == rule_name) {
                return Err(at(
                    rule.name.span(),
                    format!("plans.{name}: two rules are named {rule_name:?}"),
                ));
            }
            let attr = |s: &str, span: std::ops::Range<usize>, f: &str| {
                Attr::parse(s).map_err(|e| at(span, format!("{}: {e}", field(f))))
            };
            let scope = match (&rule.per, &rule.matches) {
                (Some(per), None) => Scope::Per(attr(per.get_ref(), per.span(), "per")?),
                (None, Some(m)) => {
                    if m.get_ref().is_empty() {
                        return Err(at(
                            m.span(),
                            format!("{}: names no attribute", field("match")),
                        ));
                    }
                    let mut conds = Vec::new();
                    for (a, values) in m.get_ref() {
                        let attr = attr(a, m.span(), "match")?;
                        if values.is_empty() {
                            return Err(at(
                                m.span(),
                                format!("{}.{a}: lists no value", field("match")),
                            ));
                        }
                        let values = values
                            .iter()
                            .map(|v| {
                                TagValue::parse(v).map_err(|e| {
                                    at(m.span(), format!("{}.{a}: {v:?}: {e}", field("match")))
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        conds.push((attr, values));
                    }
                    Scope::Match(conds)
                }
                _ => {
                    return Err(at(
                        rule_span,
                        format!(
                            "plans.{name}.rules[{rule_name}]: give exactly one of `per` and `match`"
                        ),
                    ));
                }
            };
            rules.push(Rule {
                name: rule_name.as_str().into(),
                scope,
                max: bounded(&rule.max, &field("max"))?,
                required: rule.required,
            });
        }
        plans.push(Plan {
            name: plan_name,
            limit,
            rules,
        });
    }
    let default = PlanName::parse(file.default.get_ref())
        .map_err(|e| at(file.default.span(), format!("default: {e}")))?;
    Plans::new(plans, &default).map_err(|e| at(file.default.span(), format!("default: {e}")))
}

/// The plans file behind a [`PlanBook`], followed while the book is in use.
pub struct PlansFile {
    path: PathBuf,
    book: Arc<PlanBook>,
    digest: Mutex<[u8; 32]>,
}

impl PlansFile {
    /// Reads the file; a service does not start on a broken one.
    pub fn load(path: &Path) -> Result<Arc<Self>, PlansError> {
        let fail = |reason: String| PlansError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let plans = parse(&text).map_err(fail)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            book: Arc::new(PlanBook::new(plans)),
            digest: Mutex::new(Sha256::digest(text.as_bytes()).into()),
        }))
    }

    pub fn book(&self) -> Arc<PlanBook> {
        self.book.clone()
    }

    /// Re-reads the file every second for as long as the plans are used.
    pub fn keep_fresh(self: &Arc<Self>) {
        crate::refresh::every(FILE_REFRESH, self);
    }
}

impl crate::refresh::Refresh for PlansFile {
    const WHAT: &'static str = "--plans";

    async fn refresh(&self) -> Result<(), String> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if *self.digest.lock().expect("plans digest") == digest {
            return Ok(());
        }
        // A file that does not parse keeps the plans in use (and is warned
        // about once by the refresher).
        let plans = parse(&text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.book.replace(plans);
        *self.digest.lock().expect("plans digest") = digest;
        tracing::info!(path = %self.path.display(), "plans reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plans of the README.
    pub const EXAMPLE: &str = include_str!("../tests/fixtures/plans.toml");

    #[test]
    fn the_documented_example_loads() {
        let plans = parse(EXAMPLE).unwrap();
        assert_eq!(plans.default_plan().name.as_str(), "standard");
        let premium = plans.get(&PlanName::parse("premium").unwrap()).unwrap();
        assert_eq!(premium.limit.get(), 4);
        assert_eq!(premium.rules.len(), 4);
        assert!(premium.rules[3].required);
        assert_eq!(
            premium.rules[1].scope,
            Scope::Match(vec![(
                Attr::parse("quality").unwrap(),
                vec![TagValue::parse("uhd").unwrap()]
            )])
        );
        assert!(plans.has_rules());
    }

    #[test]
    fn broken_files_name_the_line_and_field() {
        let cases = [
            (
                "default = \"gold\"\n[plans.basic]\nlimit = 1\n",
                "line 1: default: default plan gold is not defined",
            ),
            (
                "default = \"basic\"\n[plans.basic]\nlimit = 1001\n",
                "line 3: plans.basic.limit must be from 0 to 1000",
            ),
            (
                "default = \"basic\"\n[plans.basic]\nlimit = 1\nrules = [\n { name = \"a\", per = \"channel\", max = 1 },\n { name = \"a\", per = \"x\", max = 1 },\n]\n",
                "line 6: plans.basic: two rules are named \"a\"",
            ),
            (
                "default = \"basic\"\n[plans.basic]\nlimit = 1\nrules = [ { name = \"a\", per = \"Channel\", max = 1 } ]\n",
                "line 4: plans.basic.rules[a].per",
            ),
            (
                "default = \"basic\"\n[plans.basic]\nlimit = 1\nrules = [ { name = \"a\", max = 1 } ]\n",
                "give exactly one of `per` and `match`",
            ),
            (
                "default = \"basic\"\n[plans.basic]\nlimit = 1\nrules = [ { name = \"a\", per = \"x\", max = -1 } ]\n",
                "line 4: plans.basic.rules[a].max must be from 0 to 1000",
            ),
            ("default = \"basic\"\n[plans.basic]\nlimt = 1\n", "limt"),
            ("default = \n", "line 1"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains(expected),
                "{text:?}: {error:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_plans() {
        use crate::refresh::Refresh;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let file = PlansFile::load(&path).unwrap();
        let book = file.book();
        std::fs::write(&path, "default = \"basic\"\n[plans.basic]\nlimit = 2\n").unwrap();
        file.refresh().await.unwrap();
        assert_eq!(book.current().default_plan().limit.get(), 2);
        std::fs::write(&path, "default = [").unwrap();
        assert!(file.refresh().await.is_err());
        assert_eq!(book.current().default_plan().limit.get(), 2);
        assert!(PlansFile::load(&dir.path().join("missing.toml")).is_err());
    }
}
