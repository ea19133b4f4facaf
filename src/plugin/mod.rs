//! Plugins: a closed set compiled into the binary, one file each.
//!
//! A plugin's `settings` are parsed into a typed struct once, when the
//! configuration is compiled (`config/compile.rs`; a plugin that does not
//! parse fails the compile, so the admin API answers 400 naming the field,
//! e.g. `gateways[0].rules[1].plugin_chain[0].settings.limits.global.limit`),
//! and kept in every rule's [`Chain`]: the gateway's `required_plugins`
//! first, then the rule's `plugin_chain`; within each, `pre_request` before
//! `post_response`, then ascending `priority` (ties keep configuration
//! order); `enabled: false` plugins are left out.
//!
//! A request meets the chain at three points, in chain order each time:
//! 1. [`on_request`], on the head, before any body byte is read: ip
//!    whitelist, CORS (a preflight is answered here, 204), size limits by
//!    `Content-Length`, injection checks on path and headers, rate limits.
//! 2. [`on_body`], once the body is buffered: size in characters, injection
//!    checks on the body, masking, the token estimate and reservation.
//! 3. The response: headers from step 1 added ([`Flow`]), masking of the
//!    response body, token settlement from the `usage` the response carries.
//!
//! Step order across the three points therefore follows the request, not the
//! chain: a head check of a later plugin runs before a body check of an
//! earlier one.

pub mod budget;
pub mod cache;
pub mod cors;
pub mod counters;
pub mod data_masking;
pub mod external_api;
pub mod injection_protection;
pub mod ip_whitelist;
pub mod rate_limiter;
pub mod request_size_limiter;
pub mod token_rate_limiter;

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::model::{Plugin, PluginStage};
use crate::config::ConfigError;
use crate::http::{BodyKind, RequestHead};

pub use counters::Counters;

/// The names every plugin is configured by.
pub const NAMES: [&str; 10] = [
    "rate_limiter",
    "token_rate_limiter",
    "request_size_limiter",
    "cors",
    "ip_whitelist",
    "data_masking",
    "injection_protection",
    "external_api",
    "budget",
    "cache",
];

/// One configured plugin, settings compiled.
#[derive(Debug)]
pub enum Kind {
    RateLimiter(rate_limiter::RateLimiter),
    TokenRateLimiter(token_rate_limiter::TokenRateLimiter),
    RequestSizeLimiter(request_size_limiter::RequestSizeLimiter),
    Cors(cors::Cors),
    IpWhitelist(ip_whitelist::IpWhitelist),
    DataMasking(data_masking::DataMasking),
    InjectionProtection(injection_protection::InjectionProtection),
    ExternalApi(external_api::ExternalApi),
    Budget(budget::Budget),
    Cache(cache::Cache),
}

impl Kind {
    /// The plugin's configured name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::RateLimiter(_) => "rate_limiter",
            Kind::TokenRateLimiter(_) => "token_rate_limiter",
            Kind::RequestSizeLimiter(_) => "request_size_limiter",
            Kind::Cors(_) => "cors",
            Kind::IpWhitelist(_) => "ip_whitelist",
            Kind::DataMasking(_) => "data_masking",
            Kind::InjectionProtection(_) => "injection_protection",
            Kind::ExternalApi(_) => "external_api",
            Kind::Budget(_) => "budget",
            Kind::Cache(_) => "cache",
        }
    }
}

/// A plugin in a rule's chain.
#[derive(Debug)]
pub struct Compiled {
    pub kind: Kind,
    /// Identifies the plugin's counters across snapshots and shards: the
    /// owning gateway or rule id, and the plugin's place in its list.
    pub scope: u64,
}

/// A rule's plugins in the order they run.
#[derive(Debug, Default)]
pub struct Chain {
    pub plugins: Vec<Compiled>,
    /// Some plugin looks at the request body when it is buffered.
    pub wants_body: bool,
    /// Some plugin must see the whole request body: a body too large to
    /// buffer (`--replay-body-bytes`) is refused with 413.
    pub needs_full_body: bool,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

/// Parses `settings` into `T`; an error names the field below `prefix`.
fn settings<T: DeserializeOwned>(v: &serde_json::Value, prefix: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let mut field = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        if let Some(name) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            field = format!("{field}.{name}");
        }
        ConfigError::invalid(msg, field)
    })
}

/// Validates and compiles one plugin; `field` is its JSON path (e.g.
/// `gateways[0].rules[0].plugin_chain[1]`).
pub fn compile(p: &Plugin, field: &str, scope: u64) -> Result<Compiled, ConfigError> {
    let sf = format!("{field}.settings");
    let s = &p.settings;
    let kind = match p.name.as_str() {
        "rate_limiter" => {
            Kind::RateLimiter(rate_limiter::RateLimiter::new(settings(s, &sf)?, &sf)?)
        }
        "token_rate_limiter" => Kind::TokenRateLimiter(token_rate_limiter::TokenRateLimiter::new(
            settings(s, &sf)?,
            &sf,
        )?),
        "request_size_limiter" => Kind::RequestSizeLimiter(
            request_size_limiter::RequestSizeLimiter::new(settings(s, &sf)?, &sf)?,
        ),
        "cors" => Kind::Cors(cors::Cors::new(settings(s, &sf)?, &sf)?),
        "ip_whitelist" => {
            Kind::IpWhitelist(ip_whitelist::IpWhitelist::new(settings(s, &sf)?, &sf)?)
        }
        "data_masking" => {
            Kind::DataMasking(data_masking::DataMasking::new(settings(s, &sf)?, &sf)?)
        }
        "injection_protection" => Kind::InjectionProtection(
            injection_protection::InjectionProtection::new(settings(s, &sf)?, &sf)?,
        ),
        "external_api" => {
            Kind::ExternalApi(external_api::ExternalApi::new(settings(s, &sf)?, &sf)?)
        }
        "budget" => Kind::Budget(budget::Budget::new(settings(s, &sf)?, &sf)?),
        "cache" => Kind::Cache(cache::Cache::new(settings(s, &sf)?, &sf, scope)?),
        other => {
            return Err(ConfigError::invalid(
                format!("unknown plugin {other:?} (known: {})", NAMES.join(", ")),
                format!("{field}.name"),
            ))
        }
    };
    Ok(Compiled { kind, scope })
}

/// Checks a list of plugins (`required_plugins` or `plugin_chain`) without
/// keeping them: their settings parse and hold. `field` is the list's path.
pub fn validate(plugins: &[Plugin], field: &str) -> Result<(), ConfigError> {
    for (i, p) in plugins.iter().enumerate() {
        compile(p, &format!("{field}[{i}]"), 0)?;
    }
    Ok(())
}

/// One list of a rule's chain: its plugins, their JSON path (errors name
/// it, e.g. `gateways[0].required_plugins`), and the scope their counters
/// are keyed by (the owning gateway's or rule's id, and the list).
pub struct List<'a> {
    pub plugins: &'a [Plugin],
    pub field: &'a str,
    pub scope: &'a str,
}

/// The chain of a rule: `required` (the gateway's) then the rule's own, each
/// sorted by stage then priority, disabled ones left out. Every plugin's
/// settings are parsed here, once (a disabled one too, so it is checked): a
/// plugin that does not compile fails the whole configuration, naming its
/// field.
pub fn chain(required: List<'_>, own: List<'_>) -> Result<Chain, ConfigError> {
    let mut plugins = Vec::new();
    for list in [required, own] {
        let mut sorted: Vec<(usize, &Plugin)> = list.plugins.iter().enumerate().collect();
        sorted.sort_by_key(|(_, p)| (p.stage == PluginStage::PostResponse, p.priority));
        for (i, p) in sorted {
            let field = format!("{}[{i}]", list.field);
            if !p.enabled {
                // Checked, not kept (scope 0: no counters, no cache store).
                compile(p, &field, 0)?;
                continue;
            }
            let key = crate::util::fnv::fnv1a64(format!("{}#{i}", list.scope).as_bytes());
            plugins.push(compile(p, &field, key)?);
        }
    }
    let needs_full_body = plugins.iter().any(|p| match &p.kind {
        Kind::RequestSizeLimiter(s) => s.max_chars.is_some(),
        Kind::TokenRateLimiter(_)
        | Kind::DataMasking(_)
        | Kind::ExternalApi(_)
        | Kind::Budget(_) => true,
        Kind::InjectionProtection(i) => i.inspect_body,
        _ => false,
    });
    let wants_body = needs_full_body
        || plugins.iter().any(|p| match &p.kind {
            Kind::RequestSizeLimiter(s) => s.max_bytes.is_some(),
            Kind::Cache(_) => true,
            _ => false,
        });
    Ok(Chain {
        plugins,
        wants_body,
        needs_full_body,
    })
}

/// A duration: seconds as a number, or text such as `"10s"`, `"1m"`, `"500ms"`.
#[derive(Debug, Clone, Copy)]
pub struct Window(pub Duration);

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        let d = match Raw::deserialize(d)? {
            Raw::Secs(s) => Duration::from_secs(s),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a duration (e.g. \"10s\", \"1m\", or seconds as a number)"
                ))
            })?,
        };
        if d < Duration::from_millis(1) || d > Duration::from_secs(7 * 86_400) {
            return Err(serde::de::Error::custom("a window is 1 ms to 7 days"));
        }
        Ok(Window(d))
    }
}

/// What the request path does after a plugin step.
#[derive(Debug)]
pub enum Stop {
    /// Answer `status` with a JSON error (headers already in the buffer).
    Reject(u16, Cow<'static, str>),
    /// A rate limit's refusal: like `Reject`, and the body also says
    /// `"retry_after"` (TrustGate's shape).
    Limited(u16, Cow<'static, str>, String),
    /// Answer a CORS preflight: 204 with the headers in the buffer.
    Preflight,
    /// Answer from the response cache.
    Cached(std::sync::Arc<cache::Entry>),
}

/// Per-request plugin state carried from the head to the response.
#[derive(Debug, Default)]
pub struct Flow<'s> {
    pub chain: Option<&'s Chain>,
    /// The response body is masked by this plugin.
    pub mask_response: Option<&'s data_masking::DataMasking>,
    /// A token reservation to settle when the response ends.
    pub tokens: Option<token_rate_limiter::Reservation>,
    pub usage: token_rate_limiter::UsageScan,
    /// A dollar reservation to settle when the response ends.
    pub budget: Option<Box<budget::Reservation>>,
    /// The price table of the configuration serving the request.
    pub prices: Option<&'s crate::cost::Prices>,
    /// The rule's model aliases (and fallbacks): a budget prices the
    /// concrete model, not the alias.
    pub models: Option<&'s crate::config::fallback::Fallback>,
    /// The response cache's lookup and recording.
    pub cache: Option<Box<cache::Pending<'s>>>,
    /// The plugin that stopped the request, if one did.
    pub stopped_by: Option<&'static str>,
}

/// What the head-stage plugins may look at.
pub struct RequestView<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
    /// The connecting peer.
    pub peer: Option<IpAddr>,
    /// The id of the API key that authenticated the request.
    pub key_id: Option<&'a str>,
}

impl RequestView<'_> {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

/// Runs the head stage of `chain`. Response headers to add (CORS,
/// rate-limit) go to `headers` as `Name: value\r\n` lines; on a [`Stop`]
/// they belong to the gateway's own answer.
pub async fn on_request<'s>(
    counters: &Counters,
    chain: &'s Chain,
    req: &RequestView<'_>,
    flow: &mut Flow<'s>,
    headers: &mut Vec<u8>,
) -> Option<Stop> {
    flow.chain = Some(chain);
    for p in &chain.plugins {
        let stop = match &p.kind {
            Kind::IpWhitelist(w) => w.check(req),
            Kind::Cors(c) => c.on_request(req, headers),
            Kind::RequestSizeLimiter(s) => s.on_head(req),
            Kind::InjectionProtection(i) => i.on_head(req),
            // Boxed, as in `on_body`: inline, the limiter's cross-shard
            // future would size this one, copied whole for every request.
            Kind::RateLimiter(r) => Box::pin(r.check(counters, p.scope, req, headers)).await,
            Kind::DataMasking(m) => {
                if m.mask_response {
                    flow.mask_response = Some(m);
                }
                None
            }
            Kind::Cache(c) => {
                c.on_request(p.scope, req, flow);
                None
            }
            Kind::TokenRateLimiter(_) | Kind::ExternalApi(_) | Kind::Budget(_) => None,
        };
        if stop.is_some() {
            flow.stopped_by = Some(p.kind.name());
            return stop;
        }
    }
    None
}

/// Runs the body stage over a complete body in `body` (`complete: false`
/// when it was too large to buffer and only its start is there). A chunked
/// body is decoded first and `kind` becomes `Length`, so a masked body is
/// forwarded with its new length.
#[allow(clippy::too_many_arguments)]
pub async fn on_body(
    counters: &Counters,
    flow: &mut Flow<'_>,
    peer: Option<IpAddr>,
    key_id: Option<&str>,
    kind: &mut BodyKind,
    body: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    complete: bool,
    headers: &mut Vec<u8>,
) -> Option<Stop> {
    let Some(chain) = flow.chain.filter(|c| c.wants_body) else {
        return None;
    };
    if !complete && !chain.needs_full_body {
        return None;
    }
    if !complete {
        return Some(Stop::Reject(
            413,
            "request body too large for the plugins that inspect it".into(),
        ));
    }
    if *kind == BodyKind::Chunked {
        scratch.clear();
        let mut dec = crate::http::chunked::ChunkedDecoder::new();
        if dec
            .feed(body, &mut |d| scratch.extend_from_slice(d))
            .is_err()
        {
            return Some(Stop::Reject(400, "invalid chunked body".into()));
        }
        std::mem::swap(body, scratch);
        *kind = BodyKind::Length(body.len() as u64);
    }
    for p in &chain.plugins {
        let stop = match &p.kind {
            Kind::RequestSizeLimiter(s) => s.on_body(body),
            Kind::InjectionProtection(i) => i.on_body(body),
            Kind::DataMasking(m) => {
                if m.mask(body, scratch) {
                    std::mem::swap(body, scratch);
                    *kind = BodyKind::Length(body.len() as u64);
                }
                None
            }
            // Each plugin's future is boxed: inline, the largest of them
            // would be the size of this one, moved into a fresh allocation
            // for every request with a body plugin.
            Kind::TokenRateLimiter(t) => {
                Box::pin(t.reserve(counters, p.scope, peer, key_id, body, flow, headers)).await
            }
            Kind::ExternalApi(x) => Box::pin(x.check(body)).await,
            Kind::Budget(b) => {
                Box::pin(b.reserve(counters, p.scope, key_id, body, flow, headers)).await
            }
            Kind::Cache(c) => match c.on_body(counters.cache_redis.as_ref(), body, flow, headers) {
                cache::Step::Done(stop) => stop,
                // Boxed: the Redis round trip's future is large.
                cache::Step::Remote(r, key) => Box::pin(c.on_remote(r, key, flow, headers)).await,
            },
            _ => None,
        };
        if stop.is_some() {
            flow.stopped_by = Some(p.kind.name());
            return stop;
        }
    }
    None
}

/// Sees response body bytes as they pass (for the `usage` of a token
/// reservation).
pub fn observe_response(flow: &mut Flow<'_>, bytes: &[u8]) {
    if flow.tokens.is_some() || flow.budget.is_some() {
        flow.usage.feed(bytes);
    }
    if let Some(c) = flow.cache.as_mut() {
        c.record(bytes);
    }
}

/// The response is over: settles a token reservation.
pub async fn on_response_end(counters: &Counters, flow: &mut Flow<'_>, status: u16) {
    if let Some(c) = flow.cache.take() {
        c.finish(status);
    }
    if let Some(r) = flow.tokens.take() {
        // Boxed: the request path's future stays small without token limits.
        Box::pin(r.settle(counters, flow.usage.total(), status)).await;
    }
    if let Some(b) = flow.budget.take() {
        let used = flow.usage.usage().map(|u| u.billed());
        Box::pin(b.settle(counters, used, status)).await;
    }
}

/// Appends `Name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Name: <n>\r\n` without allocating.
pub(crate) fn push_header_num(out: &mut Vec<u8>, name: &str, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    push_header(out, name, &digits[i..]);
}

/// One setting in two spellings (ringgate's `ours`, TrustGate's `theirs`):
/// whichever is set, refused when both are.
pub(crate) fn either<T>(
    prefix: &str,
    ours: (Option<T>, &str),
    theirs: (Option<T>, &str),
) -> Result<Option<T>, ConfigError> {
    match (ours.0, theirs.0) {
        (Some(_), Some(_)) => Err(bad(
            prefix,
            theirs.1,
            format!("set {} or {}, not both", ours.1, theirs.1),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// An invalid-setting error for `field` below `prefix`.
pub(crate) fn bad(prefix: &str, field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::invalid(msg, format!("{prefix}.{field}"))
}
