//! streamguard: at most N live playback streams per account.
//!
//! The modules, each importing only those below it (checked by
//! `tests::modules_import_only_lower_layers`):
//!
//! - `domain`: the rules and nothing else; `secret`, `telemetry` and
//!   `ticks` are leaves beside it.
//! - `store`: makes the rules atomic on one account at a time.
//! - `auth`, `grant` (with `refresh`): identity and signed grants.
//! - `http`: the API.
//! - `config`: the flags, validated once.
//! - `app`, `server`, `lambda`, `healthcheck`: the application.
//!   [`app_state`] wires the rest from a [`Config`], [`run`] binds the
//!   configured addresses and [`serve`]s the router until shutdown.

mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod grant;
pub mod healthcheck;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod plans;
mod refresh;
pub mod secret;
mod server;
pub mod store;
pub mod telemetry;
mod ticks;

pub use app::{
    Serving, StartError, app_state, forget_idle_throttle_keys, give_back_freed_memory, in_lambda,
    init, init_logging, run, serve, serve_with_metrics, shutdown_signal, start,
};
pub use config::Config;
pub use http::{AppState, router};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Layers, lowest first: a module may import its own layer's and lower
    /// ones' modules, never a higher layer's.
    const LAYERS: &[&[&str]] = &[
        &["domain", "secret", "telemetry", "ticks"],
        &["store", "refresh", "plans"],
        &["auth", "grant"],
        &["http"],
        &["config"],
        &["app", "server", "lambda", "healthcheck"],
    ];

    /// Leaves import no module of the crate at all.
    const LEAVES: &[&str] = &["telemetry", "secret", "ticks"];

    fn layer(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|layer| layer.contains(&module))
            .unwrap_or_else(|| panic!("module {module} has no layer in LAYERS"))
    }

    /// `crate::NAME` paths in every file of `module`.
    fn imports(module: &str) -> BTreeSet<String> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        let single = src.join(format!("{module}.rs"));
        if single.exists() {
            files.push(single);
        }
        let mut dirs = vec![src.join(module)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut found = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                if rest.starts_with('{') {
                    // `crate::{a, b}`: every name in the braces.
                    let names = &rest[1..rest.find('}').unwrap()];
                    for name in names.split(',') {
                        let name = name.trim().split("::").next().unwrap().trim();
                        if !name.is_empty() {
                            found.insert(name.to_owned());
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    found.insert(name);
                }
            }
        }
        found
    }

    #[test]
    fn modules_import_only_lower_layers() {
        let modules: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
        for line in include_str!("lib.rs").lines() {
            let declared = line.strip_prefix("pub mod ").or(line.strip_prefix("mod "));
            if let Some(name) = declared.and_then(|d| d.strip_suffix(';')) {
                layer(name);
            }
        }
        let mut wrong = vec![];
        for module in &modules {
            for import in imports(module) {
                // Items of the crate root (`crate::Config`, `crate::AppState`)
                // are re-exports of `app`, `config` and `http`.
                let target = match import.as_str() {
                    "Config" => "config",
                    "AppState" | "router" => "http",
                    "StartError" | "app_state" => "app",
                    name => name,
                };
                if target == *module || !modules.contains(&target) {
                    continue;
                }
                if LEAVES.contains(module) || layer(target) > layer(module) {
                    wrong.push(format!("{module} imports {target}"));
                }
            }
        }
        assert!(wrong.is_empty(), "imports against the layers: {wrong:?}");
    }
}
