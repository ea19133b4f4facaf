//! `external_api`: TrustGate's external validator. Before the request goes
//! upstream, a JSON payload built from the request body is sent to
//! `endpoint`; conditions on the validator's JSON answer can stop the
//! request.
//!
//! ```json
//! {"endpoint": "http://validator:8000/check", "method": "POST", "timeout": "2s",
//!  "headers": {"Authorization": "Bearer v"}, "query_params": [{"name": "mode", "value": "strict"}],
//!  "field_maps": [{"source": "messages", "destination": "input"}],
//!  "conditions": [{"field": "result.flagged", "operator": "eq", "value": true,
//!                  "stop_flow": true, "message": "Content flagged"}]}
//! ```
//! - The payload is the request's JSON body, or with `field_maps` an object
//!   of each `source` (a dot path into the body) under its `destination`.
//! - A condition compares the answer's `field` (dot path) with `value`:
//!   `eq`, `neq`, `gt`, `lt` (the last two on numbers). The first matching
//!   condition with `stop_flow` refuses the request with 422 and its
//!   `message`; one without `stop_flow` is logged (info) and the request
//!   goes on.
//! - The whole call (connect, send, answer) is bounded by `timeout`
//!   (default 5 s, at most 60 s): a slow, dead or failing validator (no
//!   answer in time, refused connection, a non-2xx or non-JSON answer)
//!   never hangs the request, which is refused with 502 `External
//!   validation failed`, as TrustGate answers.
//! - `http://` and `https://` endpoints (the latter verified against the
//!   public web roots). The endpoint's name is resolved when the
//!   configuration is applied.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{bad, Stop, Window};
use crate::config::ConfigError;
use crate::upstream::tls::{self, TlsClient, Trust};

/// Largest validator answer read.
const MAX_ANSWER: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub endpoint: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout: Option<Window>,
    #[serde(default)]
    pub query_params: Vec<QueryParam>,
    #[serde(default)]
    pub field_maps: Vec<FieldMap>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParam {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    Eq,
    Neq,
    Gt,
    Lt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub operator: Operator,
    pub value: Value,
    pub stop_flow: bool,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug)]
pub struct ExternalApi {
    /// `None`: the name did not resolve when the configuration was applied
    /// (every request is then refused with 502).
    addr: Option<SocketAddr>,
    tls: Option<TlsClient>,
    https: bool,
    /// `METHOD /path?query HTTP/1.1\r\nHost: …\r\n` + headers, up to the
    /// `Content-Length` line.
    head: Vec<u8>,
    timeout: Duration,
    field_maps: Vec<(Vec<String>, String)>,
    conditions: Vec<Condition>,
}

fn dot_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

/// `scheme://host[:port]` and the rest (path and query) of an endpoint URL.
fn split_url(url: &str) -> Option<(bool, &str, u16, &str)> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().ok().filter(|&p| p > 0)?)
        }
        _ => (authority, if https { 443 } else { 80 }),
    };
    let ok = !host.is_empty()
        && !path.contains([' ', '#', '\r', '\n'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some((https, host, port, path))
}

impl ExternalApi {
    pub fn new(s: Settings, field: &str) -> Result<ExternalApi, ConfigError> {
        let (https, host, port, path) = split_url(s.endpoint.trim()).ok_or_else(|| {
            bad(
                field,
                "endpoint",
                format!("{:?} is not an http(s)://host[:port]/path URL", s.endpoint),
            )
        })?;
        let method = s.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
        if !crate::http::headers::is_token(&method) {
            return Err(bad(field, "method", format!("{method:?} is not a method")));
        }
        let timeout = s.timeout.map_or(Duration::from_secs(5), |w| w.0);
        if timeout > Duration::from_secs(60) {
            return Err(bad(field, "timeout", "at most 60s"));
        }
        let mut target = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        for (i, q) in s.query_params.iter().enumerate() {
            if q.name.is_empty() {
                return Err(bad(
                    field,
                    &format!("query_params[{i}].name"),
                    "must not be empty",
                ));
            }
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(&encode(&q.name));
            target.push('=');
            target.push_str(&encode(&q.value));
        }
        let authority = if port == if https { 443 } else { 80 } {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let mut head = Vec::new();
        let _ = write!(
            head,
            "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ringgate-external-api\r\n\
             Content-Type: application/json\r\nAccept: application/json\r\nConnection: close\r\n"
        );
        for (name, value) in &s.headers {
            let f = format!("headers.{name}");
            if !crate::http::headers::is_token(name) {
                return Err(bad(field, &f, "not a valid header name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(bad(field, &f, "no line breaks in a header value"));
            }
            let lower = name.to_ascii_lowercase();
            if ["host", "content-length", "transfer-encoding", "connection"]
                .contains(&lower.as_str())
            {
                return Err(bad(field, &f, "set by the gateway"));
            }
            let _ = write!(head, "{name}: {value}\r\n");
        }
        for (i, m) in s.field_maps.iter().enumerate() {
            for (v, name) in [(&m.source, "source"), (&m.destination, "destination")] {
                if v.trim().is_empty() {
                    return Err(bad(
                        field,
                        &format!("field_maps[{i}].{name}"),
                        "must not be empty",
                    ));
                }
            }
        }
        for (i, c) in s.conditions.iter().enumerate() {
            if c.field.trim().is_empty() {
                return Err(bad(
                    field,
                    &format!("conditions[{i}].field"),
                    "must not be empty",
                ));
            }
            if matches!(c.operator, Operator::Gt | Operator::Lt) && !c.value.is_number() {
                return Err(bad(
                    field,
                    &format!("conditions[{i}].value"),
                    "gt and lt compare numbers",
                ));
            }
        }
        let tls = if https {
            let built = tls::client_config(&Trust::Public).and_then(|config| {
                Ok(TlsClient {
                    config,
                    server_name: tls::server_name(host)?,
                    id: 1,
                })
            });
            Some(built.map_err(|e| bad(field, "endpoint", format!("TLS: {e}")))?)
        } else {
            None
        };
        let addr = crate::upstream::pool::resolve(host, port);
        if addr.is_none() {
            log::warn!("external_api endpoint {host}:{port} does not resolve: requests are refused (502) until it does");
        }
        Ok(ExternalApi {
            addr,
            tls,
            https,
            head,
            timeout,
            field_maps: s
                .field_maps
                .iter()
                .map(|m| (dot_path(&m.source), m.destination.clone()))
                .collect(),
            conditions: s.conditions,
        })
    }

    /// The payload sent for a request `body`.
    fn payload(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(b"{}".to_vec());
        }
        if self.field_maps.is_empty() {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                return Err("the request body is not JSON".into());
            }
            return Ok(body.to_vec());
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| "the request body is not JSON")?;
        let mut out = serde_json::Map::new();
        for (source, dest) in &self.field_maps {
            if let Some(x) = lookup(&v, source) {
                out.insert(dest.clone(), x.clone());
            }
        }
        serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())
    }

    /// What the conditions say about the validator's `answer`.
    fn judge(&self, answer: &Value) -> Option<Stop> {
        for c in &self.conditions {
            let got = lookup(answer, &dot_path(&c.field));
            let hit = match (c.operator, got) {
                (Operator::Eq, Some(g)) => same(g, &c.value),
                (Operator::Neq, g) => !g.is_some_and(|g| same(g, &c.value)),
                (Operator::Gt, Some(g)) => num(g).zip(num(&c.value)).is_some_and(|(a, b)| a > b),
                (Operator::Lt, Some(g)) => num(g).zip(num(&c.value)).is_some_and(|(a, b)| a < b),
                _ => false,
            };
            if !hit {
                continue;
            }
            let message = c.message.clone().unwrap_or_else(|| {
                format!("external validation refused the request ({})", c.field)
            });
            if c.stop_flow {
                return Some(Stop::Reject(422, message.into()));
            }
            log::info!("external_api: condition on {} matched: {message}", c.field);
        }
        None
    }

    /// Calls the validator for a request `body`, bounded by the timeout.
    pub async fn check(&self, body: &[u8]) -> Option<Stop> {
        let failed = |why: &str| {
            log::warn!("external_api: {why}");
            Some(Stop::Reject(502, "External validation failed".into()))
        };
        let payload = match self.payload(body) {
            Ok(p) => p,
            Err(e) => return Some(Stop::Reject(400, e.into())),
        };
        let Some(addr) = self.addr else {
            return failed("the endpoint's name did not resolve");
        };
        let answer = crate::runtime::conn::timed(self.timeout, self.call(addr, &payload)).await;
        match answer {
            None => failed(&format!("no answer within {:?}", self.timeout)),
            Some(Err(e)) => failed(&e),
            Some(Ok(v)) => self.judge(&v),
        }
    }

    async fn call(&self, addr: SocketAddr, payload: &[u8]) -> Result<Value, String> {
        let mut conn = crate::upstream::connect(addr, self.timeout, self.tls.as_ref())
            .await
            .map_err(|e| format!("cannot reach the validator at {addr}: {e:?}"))?;
        let mut req = Vec::with_capacity(self.head.len() + 32 + payload.len());
        req.extend_from_slice(&self.head);
        let _ = write!(req, "Content-Length: {}\r\n\r\n", payload.len());
        req.extend_from_slice(payload);
        if !crate::runtime::conn::send_within(self.timeout, &mut conn.stream, &req).await {
            return Err("could not send to the validator".into());
        }
        let limits = crate::http::Limits {
            max_head_bytes: 16 << 10,
            max_headers: crate::http::MAX_HEADERS,
        };
        // The whole answer (the request said Connection: close).
        let mut raw = Vec::new();
        loop {
            raw.extend_from_slice(conn.buf.filled());
            let n = conn.buf.len();
            conn.buf.consume(n);
            if raw.len() > MAX_ANSWER {
                return Err("the validator's answer is too large".into());
            }
            match conn.buf.fill_from(&mut conn.stream).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("reading the validator's answer: {e}")),
            }
        }
        let head = match crate::http::parse_response(&raw, &limits, false) {
            Ok(Some(h)) => h,
            _ => return Err("the validator's answer is not HTTP".into()),
        };
        if !(200..300).contains(&head.status) {
            return Err(format!("the validator answered {}", head.status));
        }
        let mut body = raw[head.head_len..].to_vec();
        if head.body == crate::http::BodyKind::Chunked {
            let mut decoded = Vec::new();
            crate::http::chunked::ChunkedDecoder::new()
                .feed(&body, &mut |d| decoded.extend_from_slice(d))
                .map_err(|_| "the validator's chunked answer is invalid")?;
            body = decoded;
        } else if let crate::http::BodyKind::Length(n) = head.body {
            body.truncate(n as usize);
        }
        serde_json::from_slice(&body).map_err(|_| {
            let scheme = if self.https { "https" } else { "http" };
            format!("the validator ({scheme}) did not answer JSON")
        })
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(v: Value) -> Result<ExternalApi, ConfigError> {
        ExternalApi::new(serde_json::from_value(v).unwrap(), "s")
    }

    #[test]
    fn builds_the_request_head_and_payload() {
        let a = api(
            serde_json::json!({"endpoint": "http://127.0.0.1:9/check?x=1",
            "headers": {"X-Token": "t"}, "query_params": [{"name": "mode", "value": "a b"}],
            "field_maps": [{"source": "messages.0.content", "destination": "input"}]}),
        )
        .unwrap();
        let head = String::from_utf8(a.head.clone()).unwrap();
        assert!(
            head.starts_with("POST /check?x=1&mode=a%20b HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Token: t\r\n"));
        let p = a
            .payload(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        assert_eq!(p, br#"{"input":"hi"}"#);
        assert!(a.payload(b"not json").is_err());
    }

    #[test]
    fn conditions() {
        let a = api(serde_json::json!({"endpoint": "http://127.0.0.1:9/",
            "conditions": [
                {"field": "score", "operator": "gt", "value": 0.8, "stop_flow": true, "message": "too toxic"},
                {"field": "label", "operator": "eq", "value": "spam", "stop_flow": false},
                {"field": "verdict.allowed", "operator": "eq", "value": false, "stop_flow": true}
            ]}))
        .unwrap();
        let stop = |v: Value| match a.judge(&v) {
            Some(Stop::Reject(s, m)) => Some((s, m.into_owned())),
            _ => None,
        };
        assert_eq!(
            stop(serde_json::json!({"score": 0.9})),
            Some((422, "too toxic".into()))
        );
        assert_eq!(
            stop(serde_json::json!({"score": 0.5, "label": "spam"})),
            None
        );
        assert_eq!(
            stop(serde_json::json!({"verdict": {"allowed": false}})).map(|s| s.0),
            Some(422)
        );
        assert_eq!(
            stop(serde_json::json!({"verdict": {"allowed": true}})),
            None
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (v, f) in [
            (serde_json::json!({"endpoint": "ftp://x"}), "s.endpoint"),
            (
                serde_json::json!({"endpoint": "http://x/", "timeout": "2m"}),
                "s.timeout",
            ),
            (
                serde_json::json!({"endpoint": "http://x/", "method": "GE T"}),
                "s.method",
            ),
            (
                serde_json::json!({"endpoint": "http://x/", "headers": {"Host": "y"}}),
                "s.headers.Host",
            ),
            (
                serde_json::json!({"endpoint": "http://x/", "conditions": [
                {"field": "a", "operator": "gt", "value": "x", "stop_flow": true}]}),
                "s.conditions[0].value",
            ),
        ] {
            assert_eq!(api(v).unwrap_err().field.as_deref(), Some(f));
        }
    }
}
