//! `cors`: allowed origins (exact, `*`, or wildcard subdomains such as
//! `https://*.example.com`), methods, headers, exposed headers, credentials
//! and `max_age`. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered by the gateway: 204 when
//! allowed, 403 when not, and never reaches the upstream. Other requests
//! from an allowed origin get `Access-Control-Allow-Origin` (and friends)
//! on the response; from another origin they are refused (403); without an
//! `Origin` header (not a browser) they pass untouched.
//!
//! Browsers send no credentials on a preflight, so it needs no key: the
//! proxy finds the rule the announced request (`Access-Control-Request-Method`
//! on the same path) would take — in the key's gateway if a key is sent, the
//! Host subdomain's, or else any gateway's whose rule allows the origin —
//! and lets its `cors` plugin answer (`proxy::plan::preflight`). The rule's
//! `methods` need not list `OPTIONS`.
//!
//! ```json
//! {"allowed_origins": ["https://app.example.com", "https://*.example.org"],
//!  "allowed_methods": ["GET", "POST"], "allowed_headers": ["Content-Type", "Authorization"],
//!  "expose_headers": ["X-Request-Id"], "allow_credentials": true, "max_age": 600}
//! ```
//!
//! TrustGate's settings work as written: `max_age` may be a duration string
//! (`"12h"`, sent as seconds), `log_violations: true` logs refusals at info,
//! and a preflight for a method not allowed gets 405.

use serde::Deserialize;

use super::{bad, push_header, push_header_num, RequestView, Stop};
use crate::config::ConfigError;
use crate::http::headers::is_token;
use crate::http::headers::{eq_ignore_case, trim};

fn default_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .map(String::from)
        .to_vec()
}

fn default_headers() -> Vec<String> {
    [
        "Content-Type",
        "Authorization",
        "X-Api-Key",
        "X-TG-API-Key",
        "X-Request-Id",
    ]
    .map(String::from)
    .to_vec()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds, or a duration such as TrustGate's `"12h"`.
    #[serde(default)]
    pub max_age: Option<super::Window>,
    /// Log refused origins and preflights (info).
    #[serde(default)]
    pub log_violations: bool,
}

#[derive(Debug)]
enum Origin {
    Any,
    Exact(String),
    /// `scheme://` and `.suffix` of `scheme://*.suffix`.
    Subdomains(String, String),
}

#[derive(Debug)]
pub struct Cors {
    origins: Vec<Origin>,
    methods: Vec<String>,
    headers: Vec<String>,
    methods_line: String,
    headers_line: String,
    expose_line: String,
    credentials: bool,
    max_age: Option<u64>,
    log_violations: bool,
}

impl Cors {
    pub fn new(s: Settings, field: &str) -> Result<Cors, ConfigError> {
        if s.allowed_origins.is_empty() {
            return Err(bad(field, "allowed_origins", "needs at least one origin"));
        }
        let mut origins = Vec::new();
        for (i, o) in s.allowed_origins.iter().enumerate() {
            let f = format!("allowed_origins[{i}]");
            let o = o.trim().to_ascii_lowercase();
            if o == "*" {
                if s.allow_credentials {
                    return Err(bad(
                        field,
                        &f,
                        "\"*\" cannot be used with allow_credentials",
                    ));
                }
                origins.push(Origin::Any);
                continue;
            }
            let Some((scheme, host)) = o.split_once("://") else {
                return Err(bad(
                    field,
                    &f,
                    format!("{o:?} is not an origin (scheme://host[:port])"),
                ));
            };
            let valid = |h: &str| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            };
            if let Some(suffix) = host.strip_prefix("*.") {
                if !valid(suffix) {
                    return Err(bad(field, &f, format!("{o:?} is not an origin pattern")));
                }
                origins.push(Origin::Subdomains(
                    format!("{scheme}://"),
                    format!(".{suffix}"),
                ));
            } else if valid(host) && !scheme.is_empty() {
                origins.push(Origin::Exact(o.clone()));
            } else {
                return Err(bad(
                    field,
                    &f,
                    format!("{o:?} is not an origin (scheme://host[:port])"),
                ));
            }
        }
        for (name, list) in [
            ("allowed_methods", &s.allowed_methods),
            ("allowed_headers", &s.allowed_headers),
            ("expose_headers", &s.expose_headers),
        ] {
            for (i, v) in list.iter().enumerate() {
                if !is_token(v) {
                    return Err(bad(
                        field,
                        &format!("{name}[{i}]"),
                        format!("{v:?} is not a token"),
                    ));
                }
            }
        }
        let methods: Vec<String> = s
            .allowed_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        Ok(Cors {
            origins,
            methods_line: methods.join(", "),
            methods,
            headers_line: s.allowed_headers.join(", "),
            headers: s
                .allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_line: s.expose_headers.join(", "),
            credentials: s.allow_credentials,
            max_age: s.max_age.map(|w| w.0.as_secs()),
            log_violations: s.log_violations,
        })
    }

    /// Whether `origin` is one of the allowed origins.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(o) = std::str::from_utf8(origin) else {
            return false;
        };
        self.origins.iter().any(|p| match p {
            Origin::Any => true,
            Origin::Exact(e) => e.eq_ignore_ascii_case(o),
            Origin::Subdomains(scheme, suffix) => {
                let o = o.to_ascii_lowercase();
                o.strip_prefix(scheme.as_str()).is_some_and(|host| {
                    host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                        && !host[..host.len() - suffix.len()].contains('/')
                })
            }
        })
    }

    fn allow_origin(&self, out: &mut Vec<u8>, origin: &[u8]) {
        let any = !self.credentials && self.origins.iter().any(|o| matches!(o, Origin::Any));
        push_header(
            out,
            "Access-Control-Allow-Origin",
            if any { b"*" } else { origin },
        );
        if !any {
            push_header(out, "Vary", b"Origin");
        }
        if self.credentials {
            push_header(out, "Access-Control-Allow-Credentials", b"true");
        }
    }

    fn violation(&self, what: &str, value: &[u8]) {
        if self.log_violations {
            log::info!(
                "cors: {what} {:?} not allowed",
                String::from_utf8_lossy(value)
            );
        }
    }

    pub fn on_request(&self, req: &RequestView<'_>, out: &mut Vec<u8>) -> Option<Stop> {
        let origin = trim(req.header("origin")?);
        let preflight_method = req
            .header("access-control-request-method")
            .filter(|_| req.head.is_method(req.buf, "OPTIONS"));
        let Some(method) = preflight_method else {
            if !self.allows(origin) {
                // A browser would withhold the answer anyway: refuse it
                // (403, as TrustGate answers) rather than spend the upstream
                // call. Requests without Origin (not from a browser) pass.
                self.violation("origin", origin);
                return Some(Stop::Reject(403, "CORS origin not allowed".into()));
            } else {
                self.allow_origin(out, origin);
                if !self.expose_line.is_empty() {
                    push_header(
                        out,
                        "Access-Control-Expose-Headers",
                        self.expose_line.as_bytes(),
                    );
                }
            }
            return None;
        };
        if !self.allows(origin) {
            self.violation("origin", origin);
            return Some(Stop::Reject(403, "CORS origin not allowed".into()));
        }
        let method = trim(method);
        if !self
            .methods
            .iter()
            .any(|m| eq_ignore_case(m.as_bytes(), method))
        {
            self.violation("preflight method", method);
            // 405, as TrustGate answers a preflight for a method it does not allow.
            return Some(Stop::Reject(405, "CORS method not allowed".into()));
        }
        if let Some(list) = req.header("access-control-request-headers") {
            for h in list
                .split(|&b| b == b',')
                .map(trim)
                .filter(|h| !h.is_empty())
            {
                if !self.headers.iter().any(|a| eq_ignore_case(a.as_bytes(), h)) {
                    self.violation("preflight header", h);
                    return Some(Stop::Reject(403, "CORS header not allowed".into()));
                }
            }
        }
        self.allow_origin(out, origin);
        push_header(
            out,
            "Access-Control-Allow-Methods",
            self.methods_line.as_bytes(),
        );
        if !self.headers_line.is_empty() {
            push_header(
                out,
                "Access-Control-Allow-Headers",
                self.headers_line.as_bytes(),
            );
        }
        if let Some(age) = self.max_age {
            push_header_num(out, "Access-Control-Max-Age", age);
        }
        Some(Stop::Preflight)
    }
}
