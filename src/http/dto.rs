//! The JSON shapes of the API, and their conversion from and to the domain.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{
    AccountView, ContentId, DeviceId, EndReason, InvalidId, Lease, Limit, MAX_ID_LEN, Policy,
    SecretHash, StartRequest, StreamId, Tags, UserId,
};

/// A live stream as players see it. Its strings are inline up to 24 bytes
/// (typical ids, and the timestamps exactly), so building one for every
/// heartbeat's answer allocates nothing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamDto {
    #[schema(value_type = String)]
    pub id: CompactString,
    #[schema(value_type = String)]
    pub user_id: CompactString,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub device_id: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub content_id: Option<CompactString>,
    /// The stream's attributes, as its start gave them.
    #[serde(skip_serializing_if = "Tags::is_empty")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub tags: Tags,
    /// RFC 3339, UTC, millisecond precision.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: CompactString,
    /// The lease ends here unless a heartbeat renews it.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: CompactString,
    /// How often the player should heartbeat, in seconds.
    pub heartbeat_interval_s: u64,
}

impl StreamDto {
    pub fn new(user: &UserId, lease: &Lease, policy: &Policy) -> Self {
        Self {
            id: lease.id.as_str().into(),
            user_id: user.as_str().into(),
            device_id: lease.device_id.as_ref().map(|d| d.as_str().into()),
            content_id: lease.content_id.as_ref().map(|c| c.as_str().into()),
            tags: lease.tags.clone(),
            started_at: lease.started_at.rfc3339().as_str().into(),
            expires_at: lease.expires_at.rfc3339().as_str().into(),
            heartbeat_interval_s: policy.heartbeat_interval().as_secs(),
        }
    }

    pub fn list(user: &UserId, leases: &[Lease], policy: &Policy) -> Vec<Self> {
        leases.iter().map(|l| Self::new(user, l, policy)).collect()
    }
}

/// Body of `POST /streams`; every field is optional, and so is the body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StartBody {
    /// Name the stream to make retries idempotent; generated when absent.
    #[schema(inline, value_type = Option<IdSchema>)]
    pub stream_id: Option<String>,
    /// A device holds one slot: a new start from it replaces its old stream.
    #[schema(inline, value_type = Option<IdSchema>)]
    pub device_id: Option<String>,
    #[schema(inline, value_type = Option<IdSchema>)]
    pub content_id: Option<String>,
    /// Streams of this account to end in the same step.
    #[serde(default)]
    #[schema(inline, value_type = Vec<IdSchema>)]
    pub terminate: Vec<String>,
    /// Attributes plan rules count by (at most 8; names 1-32 characters of
    /// a-z 0-9 _, values ids), e.g. `{"channel": "eurosport"}`. Fixed for
    /// the life of the stream.
    #[schema(inline, value_type = Option<TagsSchema>)]
    pub tags: Option<serde_json::Value>,
    /// A secret only this player knows (22-128 characters of A-Z a-z 0-9 -
    /// _, at least 128 random bits): heartbeats must then send it in
    /// `Streamguard-Lease-Secret`, and a retry must repeat it. Never shown.
    #[schema(pattern = "^[A-Za-z0-9_-]{22,128}$", min_length = 22, max_length = 128)]
    pub lease_secret: Option<String>,
}

/// One limit a refused start would break.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictDto {
    /// The rule's name in the account's plan; `account` for the limit.
    pub rule: String,
    pub limit: u32,
    /// How many live streams count against it.
    pub active: usize,
    /// Those streams, oldest first.
    pub streams: Vec<StreamDto>,
}

/// The tags of a start body: a JSON object of id strings.
fn tags(value: Option<serde_json::Value>) -> Result<Tags, Invalid> {
    let invalid = Invalid;
    match value {
        None | Some(serde_json::Value::Null) => Ok(Tags::default()),
        Some(serde_json::Value::Object(map)) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (name, value) in &map {
                let value = value.as_str().ok_or_else(|| {
                    invalid(format!("tags.{name}: a tag's value must be a string"))
                })?;
                pairs.push((name.as_str(), value));
            }
            Tags::from_pairs(pairs).map_err(|e| invalid(e.to_string()))
        }
        Some(_) => Err(invalid("tags: must be an object of strings".into())),
    }
}

/// A body whose values are not acceptable (400 `invalid-request`), and why.
#[derive(Debug)]
pub struct Invalid(pub String);

fn field<T>(name: &str, parsed: Result<T, InvalidId>) -> Result<T, Invalid> {
    parsed.map_err(|e| Invalid(format!("{name}: {e}")))
}

impl StartBody {
    pub fn into_request(self) -> Result<StartRequest, Invalid> {
        let stream_id = match self.stream_id {
            Some(s) => field("stream_id", StreamId::try_from(s))?,
            None => StreamId::random(),
        };
        Ok(StartRequest {
            stream_id,
            device_id: self
                .device_id
                .map(|s| field("device_id", DeviceId::try_from(s)))
                .transpose()?,
            content_id: self
                .content_id
                .map(|s| field("content_id", ContentId::try_from(s)))
                .transpose()?,
            terminate: self
                .terminate
                .into_iter()
                .map(|s| field("terminate", StreamId::try_from(s)))
                .collect::<Result<_, _>>()?,
            tags: tags(self.tags)?,
            secret: self
                .lease_secret
                .map(|s| SecretHash::of(&s).map_err(|e| Invalid(format!("lease_secret: {e}"))))
                .transpose()?,
            limit_claim: None,
            plan: None,
        })
    }
}

/// Answer to a start: 201 for a new lease, 200 for a retry of a live one.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartResponse {
    pub stream: StreamDto,
    /// Signed playback grant (compact JWS, `--grant-key`): `sub`, `sid`,
    /// `did`, `cid`, `iat`, `exp` = the lease's end. Check it with
    /// `/.well-known/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Live streams of the account after this start.
    pub active: usize,
    pub limit: u32,
    /// Streams this start ended by eviction (evict-oldest and `terminate`).
    pub evicted: Vec<String>,
    /// Streams this start ended because they played on the same device.
    pub replaced: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    pub stream: StreamDto,
    /// A fresh signed grant running to the renewed lease's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The store had forgotten the stream and the grant the heartbeat sent
    /// (`Streamguard-Grant`) re-admitted it: for the player, a renewal.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// An account's live streams.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamsResponse {
    pub user_id: String,
    pub limit: u32,
    pub active: usize,
    pub streams: Vec<StreamDto>,
}

impl StreamsResponse {
    /// The answer of `GET /streams` and of its admin twin.
    pub fn new(user: &UserId, view: &AccountView, policy: &Policy) -> Self {
        Self {
            user_id: user.to_string(),
            limit: view.limit.get(),
            active: view.live.len(),
            streams: StreamDto::list(user, &view.live, policy),
        }
    }
}

/// Why a stream ended (410 `stream-ended`).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReasonDto {
    Stopped,
    Expired,
    Evicted,
    Replaced,
    Revoked,
}

impl From<EndReason> for EndReasonDto {
    fn from(reason: EndReason) -> Self {
        match reason {
            EndReason::Stopped => Self::Stopped,
            EndReason::Expired => Self::Expired,
            EndReason::Evicted => Self::Evicted,
            EndReason::Replaced => Self::Replaced,
            EndReason::Revoked => Self::Revoked,
        }
    }
}

/// An id in the schema: 1 to [`MAX_ID_LEN`] characters of
/// `A-Z a-z 0-9 . _ : @ -`, as `domain::ids` parses them. The one place the
/// document spells the id rule; every id body field and parameter uses it.
pub struct IdSchema;

impl utoipa::PartialSchema for IdSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^[A-Za-z0-9._:@-]{{1,{MAX_ID_LEN}}}$")))
            .min_length(Some(1))
            .max_length(Some(MAX_ID_LEN))
            .into()
    }
}

impl ToSchema for IdSchema {}

/// A start's `tags`: at most 8, names of `a-z 0-9 _` (not `content_id`),
/// values ids.
pub struct TagsSchema;

impl utoipa::PartialSchema for TagsSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let names = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(?!content_id$)[a-z0-9_]{1,32}$"))
            .build();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(crate::domain::tags::MAX_TAGS))
            .property_names(Some(names))
            .additional_properties(Some(AdditionalProperties::RefOr(IdSchema::schema())))
            .into()
    }
}

impl ToSchema for TagsSchema {}

/// Body of `PUT /admin/users/{user}/limit`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LimitBody {
    /// 0 (blocked) to 1000.
    /// A JSON number with no fraction (`3` or `3.0`).
    #[schema(value_type = i64, minimum = 0, maximum = 1000)]
    pub limit: serde_json::Number,
}

impl LimitBody {
    pub fn limit(&self) -> Result<Limit, Invalid> {
        Limit::from_json(&self.limit).ok_or_else(|| {
            Invalid(format!(
                "limit must be a whole number from 0 to 1000, got {}",
                self.limit
            ))
        })
    }
}

/// Where an account's limit comes from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Set for this account through the admin API.
    Override,
    /// The plan's limit from the account's identity token (`--jwt-limit-claim`).
    Claim,
    /// The service's `--default-limit`.
    Default,
}

impl From<crate::domain::LimitSource> for LimitSource {
    fn from(source: crate::domain::LimitSource) -> Self {
        use crate::domain::LimitSource as Domain;
        match source {
            Domain::Override => LimitSource::Override,
            Domain::Claim => LimitSource::Claim,
            Domain::Default => LimitSource::Default,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitResponse {
    pub user_id: String,
    pub limit: u32,
    pub source: LimitSource,
    /// Streams ended because the new limit is below the live count.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}
