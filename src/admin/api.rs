//! The `/api/v1` routes (the README's "Admin API" lists them).
//!
//! Reads answer from the store's in-memory configuration. Every change runs
//! the apply pipeline (`apply.rs`), one change at a time ([`mutate`]): the
//! change edits a copy of the whole configuration and `normalize` +
//! `validate_model` the whole of it (so cross-entity rules hold); the
//! pipeline compiles it (parsing plugin settings, once), commits it (fsync,
//! or Redis in cluster mode), installs it and broadcasts it to every shard,
//! waiting for their acks; then the answer.
//!
//! Server-assigned fields in a create or `PUT` body (`id`, `gateway_id`,
//! `created_at`, `updated_at`, target ids) are ignored. Shapes follow
//! TrustGate's: gateways list as `{gateways, count, offset, limit}`,
//! upstreams, services and rules as bare arrays, keys as `{api_keys,
//! count}`; `PUT` of a gateway or a rule is partial (the body's fields over
//! the stored ones), of an upstream or a service a full replacement. Validation errors
//! inside the changed entity name their field relative to the request body
//! (`targets[0].port`, not `gateways[0].upstreams[2].targets[0].port`).

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::admin::apply::ApplyError;
use crate::admin::{Admin, Reply, Request};
use crate::config::model::{ApiKey, Config, Gateway, Rule, Service, Upstream};
use crate::config::validate::validate_model;
use crate::config::{compile, normalize, ConfigError};
use crate::util::rfc3339::format_rfc3339;

/// Largest page a list answers.
pub const MAX_LIMIT: usize = 100;

/// The page size of gateway, upstream and service lists when the query
/// names none (TrustGate's default).
pub const DEFAULT_LIMIT: usize = 10;

/// Handled replies and refusals alike are a [`Reply`]; `Err` short-cuts.
type Answer = Result<Reply, Reply>;

pub async fn handle(admin: &Admin, req: &Request) -> Reply {
    match route(admin, req).await {
        Ok(r) | Err(r) => r,
    }
}

async fn route(admin: &Admin, req: &Request) -> Answer {
    let rest = req.path.strip_prefix("/api/v1").unwrap_or("");
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.as_str();
    match segs.as_slice() {
        ["config"] => match m {
            "GET" => Ok(Reply::json(200, &to_value(admin.store.borrow().config())?)),
            "PUT" => replace_config(admin, req).await,
            _ => Err(not_allowed()),
        },
        ["gateways"] => match m {
            "GET" => list_gateways(admin, req),
            "POST" => create_gateway(admin, req).await,
            _ => Err(not_allowed()),
        },
        ["gateways", gid] => match m {
            "GET" => {
                let store = admin.store.borrow();
                let gi = gateway_index(store.config(), gid)?;
                Ok(Reply::json(
                    200,
                    &gateway_json(&store.config().gateways[gi])?,
                ))
            }
            "PUT" => put_gateway(admin, req, gid).await,
            "DELETE" => delete_gateway(admin, gid).await,
            _ => Err(not_allowed()),
        },
        ["gateways", gid, "keys", kid, "spend"] => match m {
            "GET" => Ok(admin.spend(req, gid, kid).await),
            _ => Err(not_allowed()),
        },
        ["gateways", gid, kind] | ["gateways", gid, kind, _] => {
            let id = segs.get(3).copied();
            match *kind {
                "upstreams" => entity::<Upstream>(admin, req, gid, id).await,
                "services" => entity::<Service>(admin, req, gid, id).await,
                "rules" => entity::<Rule>(admin, req, gid, id).await,
                "keys" => entity::<ApiKey>(admin, req, gid, id).await,
                _ => Err(Reply::error(404, "not found")),
            }
        }
        _ => Err(Reply::error(404, "not found")),
    }
}

fn not_allowed() -> Reply {
    Reply::error(405, "method not allowed on this path")
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, Reply> {
    serde_json::to_value(v).map_err(|e| Reply::error(500, &e.to_string()))
}

/// A validation refusal, its field made relative to the request body when it
/// points inside the entity at `prefix` (e.g. `gateways[0].upstreams[2]`).
fn refuse(mut e: ConfigError, prefix: &str) -> Reply {
    if let Some(rest) = e
        .field
        .as_deref()
        .filter(|_| !prefix.is_empty())
        .and_then(|f| f.strip_prefix(prefix))
    {
        if let Some(inner) = rest.strip_prefix('.') {
            e.field = Some(inner.to_string());
        } else if rest.is_empty() {
            e.field = None;
        }
    }
    Reply::json(e.status(), &e.to_json())
}

/// `normalize` + `validate_model` the whole configuration (the compile in
/// the pipeline checks plugin settings). `at` is the changed
/// entity's path (noted in `changed`, for the compile that follows, see
/// [`mutate`]); `last` moves it to the end of its list in a copy and
/// returns its path there: the copy is what is validated, so a conflict
/// between the changed entity and an existing one is reported on the changed
/// one.
fn check(
    cfg: &mut Config,
    now: SystemTime,
    changed: &mut String,
    at: &str,
    last: impl FnOnce(&mut Config) -> String,
) -> Result<(), Reply> {
    *changed = at.to_string();
    normalize(cfg, now).map_err(|e| refuse(e, at))?;
    let mut copy = cfg.clone();
    let moved = last(&mut copy);
    validate_model(&copy).map_err(|e| refuse(e, &moved))
}

/// Moves `list[at]` to the end; its new index.
fn move_last<T>(list: &mut Vec<T>, at: usize) -> usize {
    let e = list.remove(at);
    list.push(e);
    list.len() - 1
}

/// Parses a JSON request body: 415 for a non-JSON Content-Type, 400 (with the
/// field when there is one) for anything that does not parse as a `T`.
fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Reply> {
    if let Some(ct) = req.header("content-type") {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Reply::error(
                415,
                &format!("Content-Type must be application/json, not {ct:?}"),
            ));
        }
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reply::error(400, "a JSON body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(&req.body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        json_refusal(e.into_inner(), Some(path))
    })?;
    de.end().map_err(|e| json_refusal(e, None))?;
    Ok(value)
}

fn json_refusal(e: serde_json::Error, path: Option<String>) -> Reply {
    if e.classify() != serde_json::error::Category::Data {
        return Reply::error(400, &format!("invalid JSON: {e}"));
    }
    let msg = e.to_string();
    let mut field = path.filter(|p| p != ".");
    // serde reports a missing field on its parent object: name the field.
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        field = Some(match field {
            Some(parent) => format!("{parent}.{name}"),
            None => name.to_string(),
        });
    }
    let mut out = json!({ "error": msg });
    if let Some(f) = field {
        out["field"] = Value::String(f);
    }
    Reply::json(400, &out)
}

fn invalid(error: &str, field: &str) -> Reply {
    Reply::json(400, &json!({ "error": error, "field": field }))
}

/// `?offset=&limit=` (offset 0 and limit `default` when absent; a given
/// limit is 1 to 100). TrustGate quietly answers a limit out of range with
/// its default; ringgate says what is wrong.
fn page(req: &Request, default: usize) -> Result<(usize, usize), Reply> {
    let num = |name: &str| match req.param(name) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<usize>()
            .map(Some)
            .map_err(|_| invalid("must be a non-negative integer", name)),
    };
    let offset = num("offset")?.unwrap_or(0);
    let limit = match num("limit")? {
        None => default,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => return Err(invalid("must be 1 to 100", "limit")),
    };
    Ok((offset, limit))
}

/// How a list is answered, as TrustGate answers it.
#[derive(Clone, Copy)]
enum ListShape {
    /// A bare JSON array (upstreams, services, rules); `Some(n)`: pages of
    /// `n` by default, else everything unless `?limit=` says otherwise.
    Bare(Option<usize>),
    /// `{"<name>": [...], "count": total}` (keys: `api_keys`).
    Counted(&'static str),
}

fn list_reply(shape: ListShape, items: Vec<Value>, req: &Request) -> Answer {
    let count = items.len();
    let default = match shape {
        ListShape::Bare(Some(n)) => n,
        _ => usize::MAX,
    };
    let (offset, limit) = page(req, default)?;
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    Ok(Reply::json(
        200,
        &match shape {
            ListShape::Bare(_) => Value::Array(items),
            ListShape::Counted(name) => json!({ name: items, "count": count }),
        },
    ))
}

fn gateway_index(cfg: &Config, gid: &str) -> Result<usize, Reply> {
    cfg.gateways
        .iter()
        .position(|g| g.id.as_deref() == Some(gid))
        .ok_or_else(|| Reply::error(404, &format!("no gateway with id {gid:?}")))
}

/// A gateway as the gateway endpoints show it: without its nested lists.
fn gateway_json(gw: &Gateway) -> Result<Value, Reply> {
    let mut v = to_value(gw)?;
    if let Some(o) = v.as_object_mut() {
        for k in ["upstreams", "services", "rules", "keys"] {
            o.remove(k);
        }
    }
    Ok(v)
}

/// Runs one change through the apply pipeline ([`Admin::change`]):
/// `change` edits a copy of the configuration (and validates it) and names
/// the changed entity's path in its last argument, so that a compile error
/// (a plugin's settings) names its field relative to the request body as
/// validation errors do; the pipeline's errors become their answers.
async fn mutate<T>(
    admin: &Admin,
    change: impl FnOnce(&mut Config, SystemTime, &mut String) -> Result<T, Reply>,
) -> Result<T, Reply> {
    let mut at = String::new();
    let result = admin.change(|cfg, now| change(cfg, now, &mut at)).await;
    result.map_err(|e| match e {
        ApplyError::Invalid(e) => refuse(e, &at),
        e => crate::admin::apply::answer(e),
    })
}

async fn replace_config(admin: &Admin, req: &Request) -> Answer {
    // The Content-Type check and the body presence check of `body`.
    let _: Value = body(req)?;
    let cfg = compile::load(&req.body, SystemTime::now()).map_err(|e| refuse(e, ""))?;
    let exported = to_value(&cfg)?;
    mutate(admin, move |all, _, _| {
        *all = cfg;
        Ok(())
    })
    .await?;
    Ok(Reply::json(200, &exported))
}

/// `{"gateways": [...], "count": total, "offset", "limit"}`, pages of 10
/// unless `?limit=` says otherwise (TrustGate's shape and default).
fn list_gateways(admin: &Admin, req: &Request) -> Answer {
    let store = admin.store.borrow();
    let all = &store.config().gateways;
    let (offset, limit) = page(req, DEFAULT_LIMIT)?;
    let items = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(gateway_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::json(
        200,
        &json!({"gateways": items, "count": all.len(), "offset": offset, "limit": limit}),
    ))
}

/// A gateway body: the gateway's own fields; its children have their own
/// endpoints (or `PUT /api/v1/config`). `old`: a `PUT`, whose body changes
/// only the fields it names.
fn gateway_body(req: &Request, old: Option<Value>) -> Result<Gateway, Reply> {
    let patch = object_body(req)?;
    for name in ["upstreams", "services", "rules", "keys"] {
        if patch.contains_key(name) {
            return Err(invalid(
                &format!("{name} are managed under /api/v1/gateways/{{id}}/{name} (or PUT /api/v1/config)"),
                name,
            ));
        }
    }
    from_json(merge(old, patch))
}

/// A JSON object body (see [`body`]).
fn object_body(req: &Request) -> Result<serde_json::Map<String, Value>, Reply> {
    match body::<Value>(req)? {
        Value::Object(o) => Ok(o),
        _ => Err(Reply::error(400, "the body must be a JSON object")),
    }
}

/// `patch`'s fields over `old`'s (a partial update), or `patch` alone.
fn merge(old: Option<Value>, patch: serde_json::Map<String, Value>) -> Value {
    match old {
        Some(Value::Object(mut o)) => {
            o.extend(patch);
            Value::Object(o)
        }
        _ => Value::Object(patch),
    }
}

/// `v` as a `T`; a 400 naming the field otherwise.
fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, Reply> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        json_refusal(e.into_inner(), Some(path))
    })
}

async fn create_gateway(admin: &Admin, req: &Request) -> Answer {
    let mut gw = gateway_body(req, None)?;
    let stored = mutate(admin, |cfg, now, changed| {
        let stamp = format_rfc3339(now);
        gw.id = Some(uuid::Uuid::new_v4().to_string());
        gw.created_at = Some(stamp.clone());
        gw.updated_at = Some(stamp);
        cfg.gateways.push(gw);
        let gi = cfg.gateways.len() - 1;
        let at = format!("gateways[{gi}]");
        check(cfg, now, changed, &at, |_| at.clone())?;
        gateway_json(&cfg.gateways[gi])
    })
    .await?;
    Ok(Reply::json(201, &stored))
}

/// A partial update, as TrustGate's: fields the body leaves out keep their
/// values.
async fn put_gateway(admin: &Admin, req: &Request, gid: &str) -> Answer {
    let old = {
        let store = admin.store.borrow();
        let gi = gateway_index(store.config(), gid)?;
        gateway_json(&store.config().gateways[gi])?
    };
    let mut gw = gateway_body(req, Some(old))?;
    let stored = mutate(admin, |cfg, now, changed| {
        let gi = gateway_index(cfg, gid)?;
        let old = &mut cfg.gateways[gi];
        gw.id = old.id.clone();
        gw.created_at = old.created_at.clone();
        gw.updated_at = Some(format_rfc3339(now));
        gw.upstreams = std::mem::take(&mut old.upstreams);
        gw.services = std::mem::take(&mut old.services);
        gw.rules = std::mem::take(&mut old.rules);
        gw.keys = std::mem::take(&mut old.keys);
        *old = gw;
        check(cfg, now, changed, &format!("gateways[{gi}]"), |c| {
            format!("gateways[{}]", move_last(&mut c.gateways, gi))
        })?;
        gateway_json(&cfg.gateways[gi])
    })
    .await?;
    Ok(Reply::json(200, &stored))
}

async fn delete_gateway(admin: &Admin, gid: &str) -> Answer {
    mutate(admin, |cfg, _, _| {
        let gi = gateway_index(cfg, gid)?;
        cfg.gateways.remove(gi);
        Ok(())
    })
    .await?;
    Ok(Reply::no_content())
}

/// What the generic entity endpoints need of upstreams, services, rules and
/// keys.
trait Entity: Serialize + DeserializeOwned + Clone {
    const PLURAL: &'static str;
    const SINGULAR: &'static str;
    /// Keys cannot be replaced (only created and deleted).
    const PUT: bool = true;
    /// `PUT` changes only the fields its body names (rules, as TrustGate);
    /// otherwise it replaces the entity.
    const PARTIAL: bool = false;
    /// How the list endpoint answers.
    const LIST: ListShape = ListShape::Bare(Some(DEFAULT_LIMIT));
    /// `created_at` and `updated_at`.
    fn stamps(&mut self) -> (&mut Option<String>, &mut Option<String>);
    fn list(gw: &Gateway) -> &Vec<Self>;
    fn list_mut(gw: &mut Gateway) -> &mut Vec<Self>;
    fn id(&self) -> Option<&str>;
    fn name(&self) -> &str;
    /// Sets `id` and `gateway_id`.
    fn set_ids(&mut self, id: String, gateway_id: &str);
    /// Sets the server-assigned fields; `old` is the entity a PUT replaces.
    fn assign(&mut self, id: String, gateway_id: &str, _old: Option<&Self>) {
        self.set_ids(id, gateway_id);
    }
    /// Why this entity cannot be deleted (what still references it).
    fn used_by(_gw: &Gateway, _id: &str) -> Option<String> {
        None
    }
    fn show(&self) -> Result<Value, Reply> {
        to_value(self)
    }
    /// What the server generates on create; a secret is answered once.
    fn generate(&mut self) -> Result<Option<String>, Reply> {
        Ok(None)
    }
}

/// The accessors every entity writes alike: its list in the gateway
/// (`$list`), id, name, gateway id and timestamps.
macro_rules! entity_fields {
    ($list:ident) => {
        fn stamps(&mut self) -> (&mut Option<String>, &mut Option<String>) {
            (&mut self.created_at, &mut self.updated_at)
        }
        fn list(gw: &Gateway) -> &Vec<Self> {
            &gw.$list
        }
        fn list_mut(gw: &mut Gateway) -> &mut Vec<Self> {
            &mut gw.$list
        }
        fn id(&self) -> Option<&str> {
            self.id.as_deref()
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn set_ids(&mut self, id: String, gateway_id: &str) {
            self.id = Some(id);
            self.gateway_id = Some(gateway_id.to_string());
        }
    };
}

impl Entity for Upstream {
    const PLURAL: &'static str = "upstreams";
    const SINGULAR: &'static str = "upstream";
    entity_fields!(upstreams);
    fn assign(&mut self, id: String, gateway_id: &str, old: Option<&Self>) {
        self.set_ids(id, gateway_id);
        // A target at the same place keeps its id, and so its per-shard
        // balancer and health state.
        let mut free: Vec<_> = old.map(|o| o.targets.iter().collect()).unwrap_or_default();
        for t in &mut self.targets {
            t.id = free
                .iter()
                .position(|o| o.host == t.host && o.port == t.port && o.path == t.path)
                .and_then(|i| free.remove(i).id.clone());
        }
    }
    fn used_by(gw: &Gateway, id: &str) -> Option<String> {
        gw.services
            .iter()
            .find(|s| s.upstream_id.as_deref() == Some(id))
            .map(|s| format!("service {:?} ({})", s.name, s.id.as_deref().unwrap_or("")))
    }
}

impl Entity for Service {
    const PLURAL: &'static str = "services";
    const SINGULAR: &'static str = "service";
    entity_fields!(services);
    fn used_by(gw: &Gateway, id: &str) -> Option<String> {
        gw.rules
            .iter()
            .find(|r| r.service_id.as_deref() == Some(id))
            .map(|r| format!("rule {:?} ({})", r.name, r.id.as_deref().unwrap_or("")))
    }
}

impl Entity for Rule {
    const PLURAL: &'static str = "rules";
    const SINGULAR: &'static str = "rule";
    const PARTIAL: bool = true;
    const LIST: ListShape = ListShape::Bare(None);
    entity_fields!(rules);
    /// Removing a rule from a key's policies could widen the key (an empty
    /// list allows every rule), so a rule named by a policy stays.
    fn used_by(gw: &Gateway, id: &str) -> Option<String> {
        gw.keys
            .iter()
            .find(|k| k.policies.iter().flatten().any(|p| p == id))
            .map(|k| {
                format!(
                    "the policies of key {:?} ({})",
                    k.name,
                    k.id.as_deref().unwrap_or("")
                )
            })
    }
}

impl Entity for ApiKey {
    const PLURAL: &'static str = "keys";
    const SINGULAR: &'static str = "key";
    const PUT: bool = false;
    const LIST: ListShape = ListShape::Counted("api_keys");
    entity_fields!(keys);
    /// The key is generated here and shown once; a key given in the body is
    /// refused (existing keys are imported as `key_hash` through
    /// `PUT /api/v1/config`).
    fn generate(&mut self) -> Result<Option<String>, Reply> {
        if self.key.is_some() {
            return Err(invalid("keys are generated by the server", "key"));
        }
        if self.key_hash.is_some() {
            return Err(invalid("keys are generated by the server", "key_hash"));
        }
        // Derived from the generated key, like the other server fields.
        self.prefix = None;
        let plain = new_api_key()?;
        self.key = Some(plain.clone());
        Ok(Some(plain))
    }
    /// Never the hash: id, name, prefix, active, expires_at, policies.
    fn show(&self) -> Result<Value, Reply> {
        let mut v = to_value(self)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("key_hash");
        }
        Ok(v)
    }
}

/// 32 bytes from the OS CSPRNG, base64url without padding (43 characters).
fn new_api_key() -> Result<String, Reply> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Reply::error(500, &format!("the OS random source failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

async fn entity<T: Entity>(admin: &Admin, req: &Request, gid: &str, id: Option<&str>) -> Answer {
    match (req.method.as_str(), id) {
        ("GET", None) => {
            let store = admin.store.borrow();
            let gi = gateway_index(store.config(), gid)?;
            let items = T::list(&store.config().gateways[gi])
                .iter()
                .map(T::show)
                .collect::<Result<Vec<_>, _>>()?;
            list_reply(T::LIST, items, req)
        }
        ("POST", None) => create::<T>(admin, req, gid).await,
        ("GET", Some(id)) => {
            let store = admin.store.borrow();
            let gi = gateway_index(store.config(), gid)?;
            let i = entity_index::<T>(&store.config().gateways[gi], id)?;
            Ok(Reply::json(
                200,
                &T::list(&store.config().gateways[gi])[i].show()?,
            ))
        }
        ("PUT", Some(id)) if T::PUT => replace::<T>(admin, req, gid, id).await,
        ("DELETE", Some(id)) => delete::<T>(admin, gid, id).await,
        _ => Err(not_allowed()),
    }
}

fn entity_index<T: Entity>(gw: &Gateway, id: &str) -> Result<usize, Reply> {
    T::list(gw)
        .iter()
        .position(|e| e.id() == Some(id))
        .ok_or_else(|| {
            Reply::error(
                404,
                &format!("no {} with id {id:?} in this gateway", T::SINGULAR),
            )
        })
}

async fn create<T: Entity>(admin: &Admin, req: &Request, gid: &str) -> Answer {
    gateway_index(admin.store.borrow().config(), gid)?;
    let mut new: T = body(req)?;
    let plaintext = new.generate()?;
    let mut shown = mutate(admin, |cfg, now, changed| {
        let gi = gateway_index(cfg, gid)?;
        new.assign(uuid::Uuid::new_v4().to_string(), gid, None);
        let stamp = format_rfc3339(now);
        let (created, updated) = new.stamps();
        *created = Some(stamp.clone());
        *updated = Some(stamp);
        let list = T::list_mut(&mut cfg.gateways[gi]);
        list.push(new);
        let at = list.len() - 1;
        let path = format!("gateways[{gi}].{}[{at}]", T::PLURAL);
        check(cfg, now, changed, &path, |_| path.clone())?;
        T::list(&cfg.gateways[gi])[at].show()
    })
    .await?;
    if let Some(plain) = plaintext {
        shown["key"] = Value::String(plain);
    }
    Ok(Reply::json(201, &shown))
}

async fn replace<T: Entity>(admin: &Admin, req: &Request, gid: &str, id: &str) -> Answer {
    let old = {
        // 404 before 400: an unknown id is the first thing to hear about.
        let store = admin.store.borrow();
        let gi = gateway_index(store.config(), gid)?;
        let at = entity_index::<T>(&store.config().gateways[gi], id)?;
        to_value(&T::list(&store.config().gateways[gi])[at])?
    };
    let mut new: T = if T::PARTIAL {
        let patch = object_body(req)?;
        let mut old = old;
        // A reference by name replaces the stored one by id.
        if patch.contains_key("service") {
            if let Some(o) = old.as_object_mut() {
                o.remove("service_id");
            }
        }
        from_json(merge(Some(old), patch))?
    } else {
        body(req)?
    };
    let shown = mutate(admin, |cfg, now, changed| {
        let gi = gateway_index(cfg, gid)?;
        let at = entity_index::<T>(&cfg.gateways[gi], id)?;
        let list = T::list_mut(&mut cfg.gateways[gi]);
        new.assign(id.to_string(), gid, Some(&list[at]));
        let created = list[at].stamps().0.clone();
        let (c, u) = new.stamps();
        *c = created;
        *u = Some(format_rfc3339(now));
        list[at] = new;
        check(
            cfg,
            now,
            changed,
            &format!("gateways[{gi}].{}[{at}]", T::PLURAL),
            |c| {
                let last = move_last(T::list_mut(&mut c.gateways[gi]), at);
                format!("gateways[{gi}].{}[{last}]", T::PLURAL)
            },
        )?;
        T::list(&cfg.gateways[gi])[at].show()
    })
    .await?;
    Ok(Reply::json(200, &shown))
}

async fn delete<T: Entity>(admin: &Admin, gid: &str, id: &str) -> Answer {
    mutate(admin, |cfg, _, _| {
        let gi = gateway_index(cfg, gid)?;
        let gw = &mut cfg.gateways[gi];
        let at = entity_index::<T>(gw, id)?;
        if let Some(user) = T::used_by(gw, id) {
            return Err(Reply::error(
                409,
                &format!(
                    "{} {:?} is still referenced by {user}",
                    T::SINGULAR,
                    T::list(gw)[at].name()
                ),
            ));
        }
        T::list_mut(gw).remove(at);
        Ok(())
    })
    .await?;
    Ok(Reply::no_content())
}
