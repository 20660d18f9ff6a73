//! Command line and environment, validated once into typed configuration.
//! Every flag `--some-flag` is also read from `STREAMGUARD_SOME_FLAG`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{AuthSetupError, JwtSettings};
use crate::domain::{Limit, OnLimit, Policy};
pub use crate::http::{AccessLog, OnStoreError};
use crate::secret;
pub use crate::secret::Secret;
use crate::store::{StoreOptions, StoreUrl};
pub use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "streamguard",
    version = VERSION.as_str(),
    about = "Limits how many streams each account watches at once"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// What `--version` prints after the name: the version, the stores this
/// build can use and whether it holds the Lambda entry point, e.g.
/// `0.1.0 (stores: memory, file, redis, dynamodb; lambda)`.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let stores = [
        (true, "memory"),
        (cfg!(feature = "file"), "file"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "dynamodb"), "dynamodb"),
    ];
    let stores: Vec<&str> = stores.iter().filter(|s| s.0).map(|s| s.1).collect();
    let lambda = if cfg!(feature = "lambda") {
        "; lambda"
    } else {
        ""
    };
    let version = env!("CARGO_PKG_VERSION");
    format!("{version} (stores: {}{lambda})", stores.join(", "))
});

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (what runs without a subcommand).
    Serve,
    /// Create what the store needs before first use; safe to repeat.
    Init,
    /// Exit 0 when the server on `--listen` (this host) answers /healthz.
    Healthcheck,
    /// Write an edge's grant-checking key files from the JWKS (P-256 keys:
    /// `<kid>.pem` for HAProxy and nginx/njs, and `jwks.json`); see deploy/edge/.
    EdgeKeys(EdgeKeysArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct EdgeKeysArgs {
    /// The JWK Set to read: a URL (`https://…/.well-known/jwks.json`) or a file.
    #[arg(long)]
    pub jwks: String,
    /// Directory to write the key files into (created if missing; `*.pem`
    /// files of keys no longer published are removed from it).
    #[arg(long)]
    pub out: PathBuf,
}

impl Cli {
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }
}

/// The embedded store when it is compiled in; otherwise there is no
/// durable default and a build without it starts on `memory`.
pub const DEFAULT_STORE: &str = if cfg!(feature = "file") {
    "file:./streamguard-data"
} else {
    "memory"
};

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "STREAMGUARD_LISTEN",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where state lives: `file:DIR` (embedded, durable), `memory`,
    /// `redis://…`, `rediss://…`, `redis+cluster://h1:p1,h2:p2` (built with
    /// `redis`), or `dynamodb://TABLE?region=R&endpoint=URL` (`dynamodb`).
    #[arg(
        long,
        env = "STREAMGUARD_STORE",
        default_value = DEFAULT_STORE,
        value_parser = StoreUrlParser,
        hide_env_values = true,
        global = true
    )]
    pub store: StoreUrl,

    /// Streams an account may watch at once unless overridden (0–1000).
    #[arg(long, env = "STREAMGUARD_DEFAULT_LIMIT", default_value = "3", value_parser = parse_limit, global = true)]
    pub default_limit: Limit,

    /// How long a stream stays live without a heartbeat (e.g. `90s`, `2m`).
    #[arg(long, env = "STREAMGUARD_LEASE_TTL", default_value = "90s", value_parser = parse_lease_ttl, global = true)]
    pub lease_ttl: Duration,

    /// Refuse starts without a `lease_secret` (400): every lease is then
    /// bound to the player that started it.
    #[arg(long, env = "STREAMGUARD_REQUIRE_LEASE_SECRET", global = true)]
    pub require_lease_secret: bool,

    /// What a start does when the account is full.
    #[arg(long, env = "STREAMGUARD_ON_LIMIT", value_enum, default_value_t = OnLimitArg::Reject, global = true)]
    pub on_limit: OnLimitArg,

    /// Bearer token for the /admin routes; without it they answer 404.
    #[arg(long, env = "STREAMGUARD_ADMIN_TOKEN", value_parser = crate::secret::parse, hide_env_values = true, global = true)]
    pub admin_token: Option<Secret>,

    /// File holding the admin token (a trailing newline is ignored).
    #[arg(
        long,
        env = "STREAMGUARD_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token",
        global = true
    )]
    pub admin_token_file: Option<PathBuf>,

    /// Longest a request waits for the store before answering 503.
    #[arg(long, env = "STREAMGUARD_STORE_TIMEOUT", default_value = "250ms", value_parser = parse_store_timeout, global = true)]
    pub store_timeout: Duration,

    /// When the store fails: `deny` (503) or `allow` playback unenforced.
    #[arg(long, env = "STREAMGUARD_ON_STORE_ERROR", value_enum, default_value_t = OnStoreError::Deny, global = true)]
    pub on_store_error: OnStoreError,

    /// How callers prove their account: `header` (X-ID, only behind a
    /// trusted gateway) or `jwt` (a verified bearer token's `sub`).
    #[arg(long, env = "STREAMGUARD_AUTH", value_enum, default_value_t = AuthMode::Header, global = true)]
    pub auth: AuthMode,

    /// HS256 secret for `--auth jwt`.
    #[arg(long, env = "STREAMGUARD_JWT_SECRET", hide_env_values = true, value_parser = crate::secret::parse, global = true)]
    pub jwt_secret: Option<Secret>,

    /// File holding the HS256 secret (a trailing newline is ignored).
    #[arg(
        long,
        env = "STREAMGUARD_JWT_SECRET_FILE",
        global = true,
        conflicts_with = "jwt_secret"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// JWKS with the identity provider's public keys (RS*, PS*, ES256,
    /// ES384, EdDSA): a file path, re-read when it changes, or an https://
    /// URL, refreshed every 5 minutes and when a token names an unknown key.
    #[arg(
        long,
        env = "STREAMGUARD_JWT_JWKS",
        hide_env_values = true,
        global = true
    )]
    pub jwt_jwks: Option<String>,

    /// Required `iss` of tokens.
    #[arg(long, env = "STREAMGUARD_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Accepted `aud` values of tokens (comma-separated); one is required.
    #[arg(
        long,
        env = "STREAMGUARD_JWT_AUDIENCE",
        value_delimiter = ',',
        global = true
    )]
    pub jwt_audience: Vec<String>,

    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "STREAMGUARD_JWT_LEEWAY", default_value = "30s", value_parser = parse_leeway, global = true)]
    pub jwt_leeway: Duration,

    /// Claim whose whole number (0–1000) sets the account's limit; an admin
    /// override still wins over it.
    #[arg(long, env = "STREAMGUARD_JWT_LIMIT_CLAIM", global = true)]
    pub jwt_limit_claim: Option<String>,

    /// Claim whose string names the account's plan in the --plans file; a
    /// name the file does not define refuses the token.
    #[arg(long, env = "STREAMGUARD_JWT_PLAN_CLAIM", global = true)]
    pub jwt_plan_claim: Option<String>,

    /// Plans (TOML): an account-wide limit and rules per plan, and the
    /// default plan. Re-read within a second of a change.
    #[arg(long, env = "STREAMGUARD_PLANS", global = true)]
    pub plans: Option<PathBuf>,

    /// Header mode: the header in which the gateway names the account's
    /// plan (like X-ID); a plan the --plans file does not define is 400.
    #[arg(long, env = "STREAMGUARD_PLAN_HEADER", global = true)]
    pub plan_header: Option<String>,

    /// Ed25519 or P-256 private key(s) (PKCS#8 PEM) to sign playback grants
    /// with: the first signs, every key's public half is served at
    /// /.well-known/jwks.json; the file is re-read when it changes.
    #[arg(long, env = "STREAMGUARD_GRANT_KEY", global = true)]
    pub grant_key: Option<PathBuf>,

    /// Refuse to start on a Redis that may forget keys (a `maxmemory-policy`
    /// other than `noeviction`, no `appendonly`) or whose settings cannot be
    /// read; without it, that is only logged.
    #[arg(long, env = "STREAMGUARD_REDIS_STRICT", global = true)]
    pub redis_strict: bool,

    #[command(flatten)]
    pub ops: Operations,
}

/// Abuse limits, logs, metrics and shutdown.
#[derive(Debug, Clone, Args)]
pub struct Operations {
    /// Requests a second allowed for one stream (heartbeats, stops); 0 = no limit.
    #[arg(long, env = "STREAMGUARD_RATE_PER_STREAM", default_value_t = crate::http::throttle::DEFAULT_PER_STREAM, global = true)]
    pub rate_per_stream: u32,

    /// Requests a second allowed for one account (all its calls); 0 = no limit.
    #[arg(long, env = "STREAMGUARD_RATE_PER_ACCOUNT", default_value_t = crate::http::throttle::DEFAULT_PER_ACCOUNT, global = true)]
    pub rate_per_account: u32,

    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, env = "STREAMGUARD_MAX_CONNECTIONS", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,

    /// How long to keep accepting and serving after SIGTERM, with /readyz
    /// answering 503, before draining: the time a load balancer needs to
    /// see the failing readiness check and send new players elsewhere.
    #[arg(long, env = "STREAMGUARD_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration, global = true)]
    pub shutdown_delay: Duration,

    /// How long in-flight requests may finish after SIGTERM (and the
    /// delay) before their connections are closed.
    #[arg(long, env = "STREAMGUARD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_timeout: Duration,

    /// Serve /metrics on this address instead of the API's port.
    #[arg(long, env = "STREAMGUARD_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines as JSON objects (for log shippers) or text (for a terminal).
    #[arg(long, env = "STREAMGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,

    /// Which requests get an access-log line: `changes` (every answer
    /// except renewed heartbeats and reads that succeed), `all`, or `off`.
    #[arg(long, env = "STREAMGUARD_ACCESS_LOG", value_enum, default_value_t = AccessLog::Changes, global = true)]
    pub access_log: AccessLog,

    /// With --grant-key: a grant that `GET /edge/verify` accepts also
    /// renews its stream's lease when the last renewal is at least this old
    /// (e.g. `30s`; keep it under --lease-ttl), and the answer carries the
    /// renewed grant in `Streamguard-Grant`: native players that fetch
    /// segments through the edge but run no heartbeat loop stay admitted.
    /// Off by default.
    #[arg(long, env = "STREAMGUARD_EDGE_RENEW_EVERY", value_parser = parse_duration, global = true)]
    pub edge_renew_every: Option<Duration>,

    /// Web origins whose pages may call the player API from a browser
    /// (CORS), comma-separated, e.g. `https://www.example.com`; `*` for any.
    /// None by default: only pages of the service's own origin.
    #[arg(long, env = "STREAMGUARD_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin, global = true)]
    pub cors_origins: Vec<String>,
}

impl Config {
    /// The admin token: `--admin-token`, or read from `--admin-token-file`;
    /// refused when shorter than [`MIN_ADMIN_TOKEN_LEN`]. Checked here
    /// rather than in the flag's parser: clap's error would show the
    /// refused value.
    pub fn admin_token(&self) -> Result<Option<Secret>, String> {
        let token = secret::given_or_file(&self.admin_token, &self.admin_token_file)
            .map_err(|e| format!("--admin-token-file {e}"))?;
        if let Some(token) = &token
            && token.expose().chars().count() < MIN_ADMIN_TOKEN_LEN
        {
            let flag = if self.admin_token_file.is_some() {
                "--admin-token-file"
            } else {
                "--admin-token"
            };
            return Err(format!(
                "{flag}: the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters (it opens every account): use a random one, e.g. `openssl rand -base64 24`"
            ));
        }
        Ok(token)
    }

    /// The admission policy these flags describe.
    pub fn policy(&self) -> Policy {
        Policy {
            default_limit: self.default_limit,
            lease_ttl: self.lease_ttl,
            on_limit: match self.on_limit {
                OnLimitArg::Reject => OnLimit::Reject,
                OnLimitArg::EvictOldest => OnLimit::EvictOldest,
            },
            plans: None,
        }
    }

    /// The header that names the plan in header mode, checked against the
    /// other flags: plans must exist, and JWT mode takes its plan from the
    /// token.
    pub fn plan_header(&self) -> Result<Option<axum::http::HeaderName>, String> {
        if (self.jwt_plan_claim.is_some() || self.plan_header.is_some()) && self.plans.is_none() {
            return Err("--jwt-plan-claim and --plan-header name plans: set --plans too".into());
        }
        let Some(name) = &self.plan_header else {
            return Ok(None);
        };
        if self.auth != AuthMode::Header {
            return Err(
                "--plan-header is for --auth header; with --auth jwt use --jwt-plan-claim".into(),
            );
        }
        axum::http::HeaderName::try_from(name.as_str())
            .map(Some)
            .map_err(|_| format!("--plan-header {name:?} is not a header name"))
    }

    /// The flood limits, draining and logging state the handlers share.
    pub fn ops(&self) -> crate::http::Ops {
        let ops = &self.ops;
        crate::http::Ops {
            throttle: crate::http::throttle::Throttle::new(
                ops.rate_per_stream,
                ops.rate_per_account,
            ),
            draining: std::sync::atomic::AtomicBool::new(false),
            access_log: ops.access_log,
            metrics_on_api: ops.metrics_listen.is_none(),
            cors_origins: ops.cors_origins.clone(),
            edge_renew_every: ops.edge_renew_every,
        }
    }

    /// The flags that belong to the store, beside its URL.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            redis_strict: self.redis_strict,
        }
    }

    /// What JWT identity needs, or `None` in header mode.
    pub fn jwt_settings(&self) -> Result<Option<JwtSettings>, AuthSetupError> {
        if self.auth == AuthMode::Header {
            // A JWT flag without `--auth jwt` is a deployment that meant to
            // verify tokens and would trust X-ID instead: refuse it.
            let jwt_flags = [
                ("--jwt-secret", self.jwt_secret.is_some()),
                ("--jwt-secret-file", self.jwt_secret_file.is_some()),
                ("--jwt-jwks", self.jwt_jwks.is_some()),
                ("--jwt-issuer", self.jwt_issuer.is_some()),
                ("--jwt-audience", !self.jwt_audience.is_empty()),
                ("--jwt-limit-claim", self.jwt_limit_claim.is_some()),
                ("--jwt-plan-claim", self.jwt_plan_claim.is_some()),
            ];
            return match jwt_flags.into_iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(AuthSetupError::JwtFlagWithoutJwt(flag)),
                None => Ok(None),
            };
        }
        let secret = secret::given_or_file(&self.jwt_secret, &self.jwt_secret_file)
            .map_err(|reason| AuthSetupError::Keys {
                what: "--jwt-secret-file".into(),
                reason,
            })?
            .map(|secret| secret.expose().as_bytes().to_vec());
        Ok(Some(JwtSettings {
            secret,
            jwks: self.jwt_jwks.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: self.jwt_leeway,
            limit_claim: self.jwt_limit_claim.clone(),
            plan_claim: self.jwt_plan_claim.clone(),
        }))
    }

    /// Defaults, for tests and embedding: memory store, port 0.
    pub fn for_tests() -> Self {
        Cli::try_parse_from([
            "streamguard",
            "--store",
            "memory",
            "--listen",
            "127.0.0.1:0",
        ])
        .expect("defaults parse")
        .config
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLimitArg {
    Reject,
    EvictOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// The account is the `X-ID` header: only behind a trusted gateway.
    Header,
    /// The account is the `sub` of a verified `Authorization: Bearer` JWT.
    Jwt,
}

/// Shortest admin token accepted: it opens every account.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Parses `--store` without echoing the value in errors: it may carry a
/// password.
#[derive(Clone)]
struct StoreUrlParser;

impl clap::builder::TypedValueParser for StoreUrlParser {
    type Value = StoreUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreUrl, clap::Error> {
        use clap::error::ErrorKind;
        let fail = |kind, msg: String| {
            let mut cmd = cmd.clone();
            cmd.error(kind, format!("invalid value for '--store <STORE>': {msg}"))
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail(ErrorKind::InvalidUtf8, "not UTF-8".into()))?;
        text.parse()
            .map_err(|e: String| fail(ErrorKind::ValueValidation, e))
    }
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    Limit::new(n).map_err(|e| e.to_string())
}

/// A web origin as browsers send it (`https://host[:port]`, no path), or `*`.
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_owned());
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an origin like https://www.example.com"))?;
    let valid = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(format!(
            "{s:?} is not an origin like https://www.example.com (scheme and host, no path)"
        ));
    }
    Ok(s.to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 90s or 2m: {e}"))
}

fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(Duration::from_secs(3)..=Duration::from_secs(86_400)).contains(&d) {
        return Err("must be between 3s and 24h".into());
    }
    Ok(d)
}

fn parse_leeway(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_secs(600) {
        return Err("must be at most 10m".into());
    }
    Ok(d)
}

fn parse_store_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&d) {
        return Err("must be between 1ms and 60s".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("streamguard").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.command(), Command::Serve);
        let c = cli.config;
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.store.to_string(), DEFAULT_STORE);
        #[cfg(feature = "file")]
        assert_eq!(c.store.to_string(), "file:./streamguard-data");
        assert_eq!(c.default_limit.get(), 3);
        assert_eq!(c.lease_ttl, Duration::from_secs(90));
        assert_eq!(c.store_timeout, Duration::from_millis(250));
        assert_eq!(c.on_limit, OnLimitArg::Reject);
        assert_eq!(c.on_store_error, OnStoreError::Deny);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn flags_work_before_and_after_serve() {
        let a = parse(&["--lease-ttl", "2m", "--store", "memory"]).unwrap();
        let b = parse(&["serve", "--lease-ttl", "2m", "--store", "memory"]).unwrap();
        assert_eq!(a.config.lease_ttl, Duration::from_secs(120));
        assert_eq!(b.config.lease_ttl, a.config.lease_ttl);
        assert_eq!(b.command(), Command::Serve);
        assert_eq!(
            parse(&["init", "--store", "memory"]).unwrap().command(),
            Command::Init
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--default-limit", "1001"][..], "--default-limit"),
            (&["--lease-ttl", "soon"], "--lease-ttl"),
            (&["--lease-ttl", "1s"], "--lease-ttl"),
            (&["--store", "postgres://x"], "--store"),
            (&["--on-limit", "shrug"], "--on-limit"),
            (&["--admin-token", ""], "--admin-token"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn version_names_the_stores_built_in() {
        let err = parse(&["--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        let version = err.to_string();
        let prefix = format!("streamguard {} (stores: memory", env!("CARGO_PKG_VERSION"));
        assert!(version.starts_with(&prefix), "{version}");
        for (built, name) in [
            (cfg!(feature = "file"), ", file"),
            (cfg!(feature = "redis"), ", redis"),
            (cfg!(feature = "dynamodb"), ", dynamodb"),
            (cfg!(feature = "lambda"), "; lambda"),
        ] {
            assert_eq!(version.contains(name), built, "{name}: {version}");
        }
        #[cfg(all(
            feature = "file",
            feature = "redis",
            feature = "dynamodb",
            feature = "lambda"
        ))]
        assert_eq!(
            version.trim_end(),
            format!(
                "streamguard {} (stores: memory, file, redis, dynamodb; lambda)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = parse(&["--admin-token", "hunter2-hunter2-hunter2"])
            .unwrap()
            .config;
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_short_admin_token_is_refused_without_showing_it() {
        let c = parse(&["--admin-token", "hunter2-secret"]).unwrap().config;
        let err = c.admin_token().unwrap_err();
        assert!(
            err.starts_with("--admin-token:") && err.contains("at least 16"),
            "{err}"
        );
        assert!(!err.contains("hunter2-secret"), "{err}");
        let c = parse(&["--admin-token", "0123456789abcdef"])
            .unwrap()
            .config;
        assert!(c.admin_token().is_ok());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short-token\n").unwrap();
        let c = parse(&["--admin-token-file", path.to_str().unwrap()])
            .unwrap()
            .config;
        let err = c.admin_token().unwrap_err();
        assert!(
            err.starts_with("--admin-token-file:") && err.contains("at least 16"),
            "{err}"
        );
        assert!(!err.contains("short-token"), "{err}");
    }
}
