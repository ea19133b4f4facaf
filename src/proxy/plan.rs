//! From a parsed head to a [`Plan`]: who is calling (key or public
//! subdomain), which rule, service and targets serve it, and the parts of
//! the head to forward. Everything the upstream head needs is copied out of
//! the read buffer here, once, so retries can compose it again.

use sha2::{Digest, Sha256};

use crate::config::snapshot::{Gateway, Rule, Service, ServiceKind, Snapshot, Target, Upstream};
use crate::http::headers::{connection_lists, eq_ignore_case, is_hop_by_hop, trim};
use crate::http::{BodyKind, RequestHead};
use crate::proxy::Client;
use crate::runtime::shard::Shard;

/// A request id: the client's `X-Request-Id` when it is sane, else ours.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; 64],
    len: usize,
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

pub fn request_id(shard: &Shard, head: &RequestHead, buf: &[u8]) -> RequestId {
    let mut id = RequestId {
        bytes: [0; 64],
        len: 0,
    };
    if let Some(v) = head.header(buf, "x-request-id").map(trim) {
        if !v.is_empty() && v.len() <= 64 && v.iter().all(|&b| b.is_ascii_graphic()) {
            id.bytes[..v.len()].copy_from_slice(v);
            id.len = v.len();
            return id;
        }
    }
    id.bytes[..32].copy_from_slice(&shard.request_id());
    id.len = 32;
    id
}

/// Where the request's gateway key came from (that header is not forwarded).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeySource {
    None,
    TgHeader,
    Authorization,
    XApiKey,
}

fn find_key<'a>(head: &RequestHead, buf: &'a [u8]) -> (Option<&'a [u8]>, KeySource) {
    if let Some(v) = head.header(buf, "x-tg-api-key").map(trim) {
        return (Some(v), KeySource::TgHeader);
    }
    if let Some(v) = head.header(buf, "authorization").map(trim) {
        if v.len() > 7 && eq_ignore_case(&v[..7], b"bearer ") {
            return (Some(trim(&v[7..])), KeySource::Authorization);
        }
    }
    if let Some(v) = head.header(buf, "x-api-key").map(trim) {
        return (Some(v), KeySource::XApiKey);
    }
    (None, KeySource::None)
}

/// Which targets serve the request.
pub enum Targets<'s> {
    Balanced(&'s Upstream),
    Fixed(&'s Target),
}

/// A byte range of `Client::fwd`.
pub type Piece = (u32, u32);

/// Everything the exchange needs, decided before any byte goes upstream.
pub struct Plan<'s> {
    pub gateway: &'s Gateway,
    pub rule: &'s Rule,
    pub service: &'s Service,
    pub targets: Targets<'s>,
    pub method: Piece,
    /// Appended to the target's path prefix.
    pub path: Piece,
    /// The path the client sent (its dialect is read from it, not from
    /// what a stripping rule leaves of it).
    pub full_path: Piece,
    pub query: Option<Piece>,
    pub host: Option<Piece>,
    pub forwarded_for: Option<Piece>,
    pub body: BodyKind,
    pub client_version: u8,
    pub client_keep_alive: bool,
    pub expect_continue: bool,
    pub is_head: bool,
    pub request_id: RequestId,
    /// The id of the API key that authenticated the request.
    pub key_id: Option<&'s str>,
    /// Plugin state from the head to the response.
    pub plugins: crate::plugin::Flow<'s>,
}

type Refusal = (u16, &'static str, RequestId);

impl<'s> Plan<'s> {
    pub fn build(
        snap: &'s Snapshot,
        conn: &mut Client,
        head: &RequestHead,
        rid: RequestId,
    ) -> Result<Plan<'s>, Refusal> {
        let buf = conn.buf.filled();
        let (key, source) = find_key(head, buf);
        let (gateway, api_key): (&Gateway, _) = match key {
            Some(key) => {
                let hash: [u8; 32] = Sha256::digest(key).into();
                let Some(k) = snap.keys.get(&hash) else {
                    return Err((401, "invalid API key", rid));
                };
                conn.obs.api_key(&hash);
                conn.obs.gateway(snap.gateways[k.gateway].key);
                // 401 like an unknown key, as TrustGate answers: the key
                // does not authenticate this request.
                if !k.active {
                    return Err((401, "API key is inactive", rid));
                }
                if k.expires_at
                    .is_some_and(|t| t <= std::time::SystemTime::now())
                {
                    return Err((401, "API key has expired", rid));
                }
                (&snap.gateways[k.gateway], Some(k))
            }
            None => match subdomain_gateway(snap, head, buf) {
                Some(g) => {
                    conn.obs.gateway(g.key);
                    (g, None)
                }
                None => return Err((401, "missing API key", rid)),
            },
        };
        if !gateway.active {
            return Err((403, "gateway is inactive", rid));
        }
        let path = head.path.get(buf);
        let header = |name: &str| head.header(buf, name);
        let Some(found) = gateway.router.find(head.method.get(buf), path, &header) else {
            return Err((404, "no rule matches this request", rid));
        };
        let rule = &gateway.rules[found.rule];
        conn.obs.rule(found.rule, rule.key);
        match api_key {
            None if !rule.public => return Err((401, "missing API key", rid)),
            Some(k)
                if k.policies
                    .as_ref()
                    .is_some_and(|p| !p.contains(&found.rule)) =>
            {
                return Err((401, "API key may not use this rule", rid))
            }
            _ => {}
        }
        let service = &gateway.services[rule.service];
        let targets = match &service.kind {
            ServiceKind::Upstream(i) => Targets::Balanced(&gateway.upstreams[*i]),
            ServiceKind::Endpoint(t) => Targets::Fixed(t),
        };

        // Copy what the upstream head needs out of the read buffer.
        let fwd = &mut conn.fwd;
        fwd.clear();
        conn.fwd_headers.clear();
        let piece = |fwd: &mut Vec<u8>, bytes: &[u8]| -> Piece {
            let start = fwd.len() as u32;
            fwd.extend_from_slice(bytes);
            (start, fwd.len() as u32)
        };
        let method = piece(fwd, head.method.get(buf));
        // The client's whole path; what is forwarded is its rest after the
        // rule path when the rule strips it (a suffix: no second copy).
        let full_path = piece(fwd, path);
        let path = if rule.strip_path {
            (full_path.0 + found.matched_len as u32, full_path.1)
        } else {
            full_path
        };
        let query = head.query.map(|q| piece(fwd, q.get(buf)));
        let host = head.host.map(|h| piece(fwd, h.get(buf)));
        let mut forwarded_for = None;
        let mut connection: [&[u8]; 4] = [b""; 4];
        let mut n_conn = 0;
        for h in head.headers() {
            if eq_ignore_case(h.name.get(buf), b"connection") && n_conn < connection.len() {
                connection[n_conn] = h.value.get(buf);
                n_conn += 1;
            }
        }
        for h in head.headers() {
            let name = h.name.get(buf);
            let value = h.value.get(buf);
            if eq_ignore_case(name, b"x-forwarded-for") {
                forwarded_for = Some(piece(fwd, value));
                continue;
            }
            if skip_request_header(name, source)
                || key.is_some_and(|k| carries_key(value, k))
                || (n_conn > 0 && connection_lists(&connection[..n_conn], name))
            {
                continue;
            }
            let (ns, ne) = piece(fwd, name);
            let (vs, ve) = piece(fwd, value);
            conn.fwd_headers.push((ns, ne, vs, ve));
        }

        Ok(Plan {
            gateway,
            rule,
            service,
            targets,
            method,
            path,
            full_path,
            query,
            host,
            forwarded_for,
            body: head.body,
            client_version: head.version,
            client_keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            is_head: head.is_method(buf, "HEAD"),
            request_id: rid,
            key_id: api_key.map(|k| k.id.as_str()),
            plugins: crate::plugin::Flow {
                prices: Some(&snap.prices),
                models: rule.fallback.as_deref(),
                ..Default::default()
            },
        })
    }
}

/// Headers the gateway sets itself, hop-by-hop ones, and the gateway key.
fn skip_request_header(name: &[u8], source: KeySource) -> bool {
    if is_hop_by_hop(name) {
        return true;
    }
    const OURS: [&[u8]; 7] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-request-id",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-tg-api-key",
    ];
    if OURS.iter().any(|o| eq_ignore_case(o, name)) {
        return true;
    }
    match source {
        KeySource::Authorization => eq_ignore_case(name, b"authorization"),
        KeySource::XApiKey => eq_ignore_case(name, b"x-api-key"),
        _ => false,
    }
}

/// A browser's CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) that a rule's `cors` plugin answers: the
/// rule the request it announces would take, and that plugin. Browsers send
/// no credentials on a preflight, so the gateway comes from a valid key if
/// one is sent anyway, else from the Host subdomain, else from the rules
/// (of any gateway) that route the announced request and whose `cors`
/// settings allow the origin. `None`: not a preflight, or no such rule (the
/// request then takes the ordinary path).
pub fn preflight<'s>(
    snap: &'s Snapshot,
    head: &RequestHead,
    buf: &[u8],
) -> Option<&'s crate::plugin::cors::Cors> {
    if !head.is_method(buf, "OPTIONS") {
        return None;
    }
    let origin = trim(head.header(buf, "origin")?);
    let method = trim(head.header(buf, "access-control-request-method")?);
    let path = head.path.get(buf);
    let header = |name: &str| head.header(buf, name);
    let cors_of = |gw: &'s Gateway| {
        // The rule the announced method takes; else one of the path's rules
        // for another method, whose cors plugin then refuses the method
        // (405) instead of the preflight falling through to a 401.
        let found = gw.router.find(method, path, &header).or_else(|| {
            ["POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                .iter()
                .find_map(|m| gw.router.find(m.as_bytes(), path, &header))
        })?;
        gw.rules[found.rule]
            .plugins
            .plugins
            .iter()
            .find_map(|p| match &p.kind {
                crate::plugin::Kind::Cors(c) => Some(c),
                _ => None,
            })
    };
    let known = match find_key(head, buf).0 {
        Some(key) => {
            let hash: [u8; 32] = Sha256::digest(key).into();
            snap.keys.get(&hash).map(|k| &snap.gateways[k.gateway])
        }
        None => None,
    };
    if let Some(gw) = known.or_else(|| subdomain_gateway(snap, head, buf)) {
        // An inactive gateway answers nothing itself (the ordinary path's 403).
        return cors_of(gw).filter(|_| gw.active);
    }
    let mut refusing = None;
    for gw in snap.gateways.iter().filter(|g| g.active) {
        if let Some(c) = cors_of(gw) {
            if c.allows(origin) {
                return Some(c);
            }
            refusing.get_or_insert(c);
        }
    }
    // Only rules that refuse this origin: one of them says so (403).
    refusing
}

/// Whether a header value carries the gateway key: the key itself, or
/// `<scheme> <key>` (`Bearer <key>`). Every such header is dropped, not only
/// the one the key was read from: a client that sends the key twice
/// (`X-TG-API-Key` and `Authorization: Bearer`) must not leak the copy.
fn carries_key(value: &[u8], key: &[u8]) -> bool {
    let v = trim(value);
    if v == key {
        return true;
    }
    v.iter()
        .position(|&b| b == b' ')
        .is_some_and(|sp| trim(&v[sp..]) == key)
}

/// The gateway named by the Host header's first label, if any.
fn subdomain_gateway<'s>(
    snap: &'s Snapshot,
    head: &RequestHead,
    buf: &[u8],
) -> Option<&'s Gateway> {
    if snap.subdomains.is_empty() {
        return None;
    }
    let host = head.host?.get(buf);
    let label = host.split(|&b| b == b'.' || b == b':').next()?;
    let mut lower = [0u8; 63];
    if label.is_empty() || label.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(label) {
        *d = s.to_ascii_lowercase();
    }
    let label = std::str::from_utf8(&lower[..label.len()]).ok()?;
    snap.subdomains.get(label).map(|&i| &snap.gateways[i])
}
