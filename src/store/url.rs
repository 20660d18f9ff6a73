//! Parsing of `--store` URLs.

use std::fmt;
#[cfg(feature = "file")]
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::secret::redact_userinfo;

/// A store named by `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory`: in-process and volatile.
    Memory,
    /// `file:PATH`: the embedded durable store in directory PATH.
    #[cfg(feature = "file")]
    File(PathBuf),
    /// `redis://…`, `rediss://…`, `redis+cluster://h1:p1,h2:p2`,
    /// `redis+sentinel://s1:p1,s2:p2/MASTER`.
    #[cfg(feature = "redis")]
    Redis(RedisTarget),
    /// `dynamodb://TABLE?region=R&endpoint=URL`: an Amazon DynamoDB table.
    #[cfg(feature = "dynamodb")]
    DynamoDb(DynamoDbUrl),
}

/// Where a DynamoDB table is: its name, and optionally the region and an
/// endpoint (for local emulators); both default to the AWS SDK's chain.
#[cfg(feature = "dynamodb")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoDbUrl {
    pub table: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl StoreUrl {
    /// Whether the state lives outside this process, so that any number of
    /// instances (Lambda's included) can share it.
    pub fn is_shared(&self) -> bool {
        match self {
            StoreUrl::Memory => false,
            #[cfg(feature = "file")]
            StoreUrl::File(_) => false,
            #[cfg(feature = "redis")]
            StoreUrl::Redis(_) => true,
            #[cfg(feature = "dynamodb")]
            StoreUrl::DynamoDb(_) => true,
        }
    }
}

/// Where a Redis store lives and how its keys are named. Its `Debug`
/// hides the passwords the node URLs may carry.
#[cfg(feature = "redis")]
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// One URL for a single server; one per seed node for a cluster; one
    /// per Sentinel for a primary that Sentinel names.
    pub nodes: Vec<String>,
    pub cluster: bool,
    /// `redis+sentinel://…/MASTER`: the primary is whichever server the
    /// Sentinels (`nodes`) name for MASTER, asked again after a failure.
    pub sentinel: Option<String>,
    /// Keys are `<prefix>:{<account>}`; `?prefix=` sets it.
    pub prefix: String,
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact_userinfo(n)).collect();
        f.debug_struct("RedisTarget")
            .field("nodes", &nodes)
            .field("cluster", &self.cluster)
            .field("sentinel", &self.sentinel)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Key prefix when the URL names none.
#[cfg(feature = "redis")]
pub const DEFAULT_REDIS_PREFIX: &str = "streamguard";

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = s.strip_prefix("file:") {
            return file_store(path);
        }
        let scheme = s.split_once(':').map_or(s, |(scheme, _)| scheme);
        #[cfg(feature = "redis")]
        if matches!(
            scheme,
            "redis"
                | "rediss"
                | "redis+cluster"
                | "rediss+cluster"
                | "redis+sentinel"
                | "rediss+sentinel"
        ) {
            return redis_target(s).map(StoreUrl::Redis);
        }
        match scheme {
            #[cfg(feature = "dynamodb")]
            "dynamodb" => dynamodb_store(s),
            #[cfg(not(feature = "dynamodb"))]
            "dynamodb" => Err(
                "the dynamodb store is not part of this build (rebuild with --features dynamodb)"
                    .into(),
            ),
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+sentinel"
            | "rediss+sentinel" => Err(
                "the redis store is not part of this build (rebuild with --features redis)".into(),
            ),
            _ => Err(format!(
                "unknown store {:?}: expected `memory`, `file:PATH`, `redis://…`, `redis+cluster://…` or `redis+sentinel://…`",
                redact_userinfo(s)
            )),
        }
    }
}

#[cfg(feature = "file")]
fn file_store(path: &str) -> Result<StoreUrl, String> {
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err("file: needs a directory, e.g. file:./streamguard-data".into());
    }
    Ok(StoreUrl::File(PathBuf::from(path)))
}

#[cfg(not(feature = "file"))]
fn file_store(_: &str) -> Result<StoreUrl, String> {
    Err("the file store is not part of this build (enable the `file` feature)".into())
}

/// Splits `?prefix=` off a Redis URL and, for a cluster, the seed list.
#[cfg(feature = "redis")]
fn redis_target(url: &str) -> Result<RedisTarget, String> {
    let (url, fragment) = match url.split_once('#') {
        Some((url, fragment)) => (url, format!("#{fragment}")),
        None => (url, String::new()),
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut prefix = DEFAULT_REDIS_PREFIX.to_owned();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("prefix=") {
            Some(p) => prefix = p.to_owned(),
            None => rest.push(pair),
        }
    }
    crate::domain::UserId::parse(&prefix).map_err(|_| {
        format!("redis key prefix {prefix:?} may only contain A-Z a-z 0-9 . _ : @ -")
    })?;
    let query = if rest.is_empty() {
        fragment
    } else {
        format!("?{}{fragment}", rest.join("&"))
    };
    let (scheme, hosts) = base
        .split_once("://")
        .ok_or("a Redis URL looks like redis://host:6379")?;
    let (scheme, cluster) = match scheme.strip_suffix("+cluster") {
        Some(plain) => (plain, true),
        None => (scheme, false),
    };
    let (scheme, sentinel, hosts) = match scheme.strip_suffix("+sentinel") {
        Some(plain) => {
            let (hosts, master) = hosts
                .rsplit_once('/')
                .filter(|(_, m)| !m.is_empty())
                .ok_or(
                    "a Sentinel URL names its primary: redis+sentinel://s1:26379,s2:26379/MASTER",
                )?;
            (plain, Some(master.to_owned()), hosts)
        }
        None => (scheme, None, hosts),
    };
    let nodes: Vec<String> = if cluster || sentinel.is_some() {
        // Credentials come once, before the seed list, and apply to every
        // node; the password may hold commas.
        let (credentials, seeds) = match hosts.rsplit_once('@') {
            Some((userinfo, seeds)) => (format!("{userinfo}@"), seeds),
            None => (String::new(), hosts),
        };
        seeds
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{credentials}{h}{query}"))
            .collect()
    } else {
        vec![format!("{scheme}://{hosts}{query}")]
    };
    if hosts.is_empty() || nodes.is_empty() {
        return Err(format!("{url:?} names no Redis host"));
    }
    Ok(RedisTarget {
        nodes,
        cluster,
        sentinel,
        prefix,
    })
}

#[cfg(feature = "dynamodb")]
fn dynamodb_store(s: &str) -> Result<StoreUrl, String> {
    const EXAMPLE: &str = "e.g. dynamodb://streamguard?region=eu-west-1";
    let rest = s
        .strip_prefix("dynamodb://")
        .ok_or_else(|| format!("a DynamoDB store is dynamodb://TABLE, {EXAMPLE}"))?;
    let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
    let valid_name = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        return Err(format!(
            "{table:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .), {EXAMPLE}"
        ));
    }
    let mut url = DynamoDbUrl {
        table: table.to_owned(),
        region: None,
        endpoint: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if value.is_empty() {
            return Err(format!("dynamodb store parameter {key:?} needs a value"));
        }
        match key {
            "region" => url.region = Some(value.to_owned()),
            "endpoint" => url.endpoint = Some(value.to_owned()),
            _ => {
                return Err(format!(
                    "unknown dynamodb store parameter {key:?}: expected region or endpoint"
                ));
            }
        }
    }
    Ok(StoreUrl::DynamoDb(url))
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory"),
            #[cfg(feature = "file")]
            StoreUrl::File(path) => write!(f, "file:{}", path.display()),
            #[cfg(feature = "redis")]
            StoreUrl::Redis(target) => {
                // Host names only: a URL may carry a password.
                let hosts: Vec<&str> = target
                    .nodes
                    .iter()
                    .map(|n| n.split_once("://").map_or(n.as_str(), |(_, rest)| rest))
                    .map(|n| n.rsplit_once('@').map_or(n, |(_, host)| host))
                    .collect();
                let tls = target.nodes.iter().any(|n| n.starts_with("rediss://"));
                let scheme = if tls { "rediss" } else { "redis" };
                let cluster = if target.cluster { "+cluster" } else { "" };
                let (sentinel, master) = match &target.sentinel {
                    Some(master) => ("+sentinel", format!("/{master}")),
                    None => ("", String::new()),
                };
                write!(
                    f,
                    "{scheme}{cluster}{sentinel}://{}{master} (prefix {})",
                    hosts.join(","),
                    target.prefix
                )
            }
            #[cfg(feature = "dynamodb")]
            StoreUrl::DynamoDb(url) => {
                write!(f, "dynamodb://{}", url.table)?;
                let endpoint = url.endpoint.as_deref().map(redact_userinfo);
                let params = [("region", url.region.clone()), ("endpoint", endpoint)];
                let mut sep = '?';
                for (key, value) in params {
                    if let Some(value) = value {
                        write!(f, "{sep}{key}={value}")?;
                        sep = '&';
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory() {
        assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
    }

    #[cfg(feature = "file")]
    #[test]
    fn parses_file() {
        assert_eq!(
            "file:./data".parse(),
            Ok(StoreUrl::File(PathBuf::from("./data")))
        );
        assert_eq!(
            "file:///var/lib/sg".parse(),
            Ok(StoreUrl::File(PathBuf::from("/var/lib/sg")))
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn parses_redis_and_cluster_urls() {
        let single: StoreUrl = "rediss://:pw@cache:6380/2?prefix=tv".parse().unwrap();
        assert_eq!(
            single,
            StoreUrl::Redis(RedisTarget {
                nodes: vec!["rediss://:pw@cache:6380/2".into()],
                cluster: false,
                sentinel: None,
                prefix: "tv".into(),
            })
        );
        assert!(!single.to_string().contains("pw"), "{single}");
        assert!(!format!("{single:?}").contains("pw"), "{single:?}");
        let cluster: StoreUrl = "redis+cluster://h1:7000,h2:7001".parse().unwrap();
        assert_eq!(
            cluster,
            StoreUrl::Redis(RedisTarget {
                nodes: vec!["redis://h1:7000".into(), "redis://h2:7001".into()],
                cluster: true,
                sentinel: None,
                prefix: DEFAULT_REDIS_PREFIX.into(),
            })
        );
        let sentinel: StoreUrl = "redis+sentinel://:pw@s1:26379,s2:26380/mymaster?prefix=tv"
            .parse()
            .unwrap();
        assert_eq!(
            sentinel,
            StoreUrl::Redis(RedisTarget {
                nodes: vec!["redis://:pw@s1:26379".into(), "redis://:pw@s2:26380".into()],
                cluster: false,
                sentinel: Some("mymaster".into()),
                prefix: "tv".into(),
            })
        );
        assert_eq!(
            sentinel.to_string(),
            "redis+sentinel://s1:26379,s2:26380/mymaster (prefix tv)"
        );
        assert!("redis+sentinel://s1:26379".parse::<StoreUrl>().is_err());
        let tls: StoreUrl = "rediss://h:6380/?prefix=p&protocol=resp3#insecure"
            .parse()
            .unwrap();
        let StoreUrl::Redis(tls) = tls else {
            unreachable!()
        };
        assert_eq!(tls.nodes, ["rediss://h:6380/?protocol=resp3#insecure"]);
        assert_eq!(tls.prefix, "p");
        assert!("redis://h?prefix={bad}".parse::<StoreUrl>().is_err());
        assert!("redis+cluster://".parse::<StoreUrl>().is_err());

        // Cluster credentials apply to every seed; a comma in the password
        // does not split the list, and nothing of it is shown.
        let secured: StoreUrl = "rediss+cluster://app:pa,ss@h1:7000,h2:7001"
            .parse()
            .unwrap();
        let StoreUrl::Redis(target) = &secured else {
            unreachable!()
        };
        assert_eq!(
            target.nodes,
            ["rediss://app:pa,ss@h1:7000", "rediss://app:pa,ss@h2:7001"]
        );
        assert_eq!(
            secured.to_string(),
            "rediss+cluster://h1:7000,h2:7001 (prefix streamguard)"
        );
        assert!(!format!("{secured:?}").contains("pa,ss"), "{secured:?}");
        assert!(!format!("{secured:?}").contains("ss@"), "{secured:?}");
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn parses_dynamodb_and_prints_it_back() {
        let text = "dynamodb://sg-leases?region=eu-west-1&endpoint=http://127.0.0.1:8000";
        let url: StoreUrl = text.parse().unwrap();
        assert_eq!(
            url,
            StoreUrl::DynamoDb(DynamoDbUrl {
                table: "sg-leases".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:8000".into()),
            })
        );
        assert_eq!(url.to_string(), text);
        assert_eq!(
            "dynamodb://leases".parse::<StoreUrl>().unwrap().to_string(),
            "dynamodb://leases"
        );
        let proxied: StoreUrl = "dynamodb://leases?endpoint=http://u:s3cret@proxy:8000"
            .parse()
            .unwrap();
        assert_eq!(
            proxied.to_string(),
            "dynamodb://leases?endpoint=http://u:***@proxy:8000"
        );
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn rejects_bad_dynamodb_urls() {
        for (text, says) in [
            ("dynamodb://", "not a DynamoDB table name"),
            ("dynamodb://a/b", "not a DynamoDB table name"),
            ("dynamodb:leases", "dynamodb://TABLE"),
            (
                "dynamodb://leases?colour=red",
                "unknown dynamodb store parameter",
            ),
            ("dynamodb://leases?region=", "needs a value"),
        ] {
            let err = text.parse::<StoreUrl>().unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let err = "postgres://u:s3cret@db/x".parse::<StoreUrl>().unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!("file:".parse::<StoreUrl>().is_err());
        assert!(
            "postgres://x"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("unknown store")
        );
        #[cfg(not(feature = "redis"))]
        assert!(
            "redis://localhost"
                .parse::<StoreUrl>()
                .unwrap_err()
                .contains("not part of this build")
        );
    }
}
