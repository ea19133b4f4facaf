//! The serde model of the configuration: the declarative file (`serve --config`,
//! `PUT /api/v1/config`), the export (`GET /api/v1/config`) and the stored
//! state (ids filled) all use these types.
//!
//! Unknown fields are refused everywhere; `None` fields are left out of the
//! output; a plaintext API `key` is accepted on input but never serialized.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn default_true() -> bool {
    true
}

fn default_weight() -> u32 {
    1
}

fn default_settings() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_threshold() -> u32 {
    3
}

fn default_interval() -> u64 {
    30
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateways: Vec<Gateway>,
    /// Prices per model overriding the built-in examples (`crate::cost`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, crate::cost::PriceUsd>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayStatus {
    #[default]
    Active,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub status: GatewayStatus,
    #[serde(default)]
    pub required_plugins: Vec<Plugin>,
    /// TrustGate's gateway settings ringgate stores and returns but does
    /// not act on (see the README's compatibility table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_plugins: Option<serde_json::Value>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    /// TrustGate's validator spells it `least-conn`.
    #[serde(alias = "least-conn")]
    LeastConnections,
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<HealthChecks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// TrustGate's `semantic` balancing, websocket and proxy settings:
    /// stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<serde_json::Value>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthChecks {
    /// Mark a target down after `threshold` consecutive failures.
    #[serde(default)]
    pub passive: bool,
    /// Consecutive failures (default 3).
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Seconds a target stays down (default 30).
    #[serde(default = "default_interval")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Headers sent with every active probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Seconds a probe may take (default 5, at most `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Per-target circuit breaker; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

fn default_failure_ratio() -> f64 {
    0.5
}

fn default_breaker_window() -> u32 {
    20
}

fn default_cooldown() -> u64 {
    30
}

/// Opens when the failures among the last `window` outcomes reach
/// `failure_ratio` (once `min_requests` are counted); after `cooldown`
/// seconds one probe request decides whether it closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    #[serde(default = "default_breaker_window")]
    pub window: u32,
    /// Outcomes counted before the ratio is trusted (default: 10, at most `window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// Seconds.
    #[serde(default = "default_cooldown")]
    pub cooldown: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Https,
}

impl Protocol {
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Http => 80,
            Protocol::Https => 443,
        }
    }
}

/// A provider credential. `api_key`, `header_name`/`header_value`,
/// `param_*` as a query parameter and `azure_endpoint`/`azure_version` are
/// acted on; a `param_location: "body"` and the cloud identity fields
/// (Azure managed identity, GCP service accounts, AWS) are TrustGate's and
/// only stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    /// With `param_value`: a query parameter added to every upstream
    /// request (`param_location: "query"`, the default); `"body"` (a JSON
    /// body field in TrustGate) is stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_location: Option<String>,
    /// `https://<resource>.openai.azure.com`: an `azure` target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_endpoint: Option<String>,
    /// An `azure` target's `api-version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_use_managed_identity: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_use_service_account: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_service_account_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_use_role: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_override: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Empty on a provider target (TrustGate's form): the provider's public
    /// endpoint is used (see `provider/endpoint.rs`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// 0 on a provider target without a host.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// TrustGate's target priority: stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// TrustGate's `{"api": "completions" | "responses"}` (OpenAI): stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_options: Option<serde_json::Value>,
    /// TrustGate's OAuth2 client credentials for the target: stored, not
    /// acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_ssl: Option<bool>,
    /// `https` only: trust only this CA bundle (PEM text) instead of the
    /// public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// `https` only: like `ca_pem`, read from this file when the
    /// configuration is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// SSE keep-alive: while a streaming request waits for this target's
    /// answer, send the client a `: ping` comment every this many seconds
    /// (after sending it a `200 text/event-stream` head). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_ping_secs: Option<u64>,
    /// `provider: "azure"` only: the deployment requests go to
    /// (`/openai/deployments/{deployment}/…`); absent: the request's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_deployment: Option<String>,
    /// `provider: "azure"` only: the `api-version` query parameter
    /// (default [`AZURE_API_VERSION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// The Azure OpenAI `api-version` used when a target names none.
pub const AZURE_API_VERSION: &str = "2024-10-21";

fn is_zero(n: &u16) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    Upstream,
    Endpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ServiceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    /// Input only: the upstream's name, resolved into `upstream_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// Optional, as in TrustGate; when given, unique in its gateway (keys'
    /// `policies` may name it).
    #[serde(default)]
    pub name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Input only: the service's name, resolved into `service_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub strip_path: bool,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub retry_attempts: u32,
    #[serde(default)]
    pub plugin_chain: Vec<Plugin>,
    #[serde(default = "default_true")]
    pub active: bool,
    #[serde(default)]
    pub public: bool,
    /// Model fallbacks after the rule's service (see `config::fallback`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<FallbackStep>,
    /// Client model name → concrete model for the rule's service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_aliases: BTreeMap<String, String>,
    /// TrustGate's `endpoint`/`agent` rule type and TrustLens settings:
    /// stored, not acted on.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustlens: Option<serde_json::Value>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    pub name: String,
    /// Input only: the plaintext key. Never serialized.
    #[serde(default, skip_serializing)]
    pub key: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// The first 8 characters of the plaintext, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default = "default_true")]
    pub active: bool,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Rule ids (rule names are accepted on input and resolved to ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// TrustGate's IAM subject of the key: stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStage {
    #[default]
    PreRequest,
    /// TrustGate's other two stages: accepted, and run with `pre_request`
    /// (each plugin acts where its kind needs to, see `src/plugin/`).
    PostRequest,
    PreResponse,
    PostResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// TrustGate's plugin id: stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// TrustGate's plugin level (`gateway`/`rule`): stored, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// TrustGate runs same-priority `parallel` plugins concurrently;
    /// ringgate's plugins are in-process and run in order either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<bool>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub stage: PluginStage,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_settings")]
    pub settings: serde_json::Value,
}

/// One step of a rule's model fallbacks (see `config::fallback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackStep {
    /// The upstream's name or id, in the rule's gateway.
    pub upstream: String,
    /// The concrete model this step is sent.
    pub model: String,
}
