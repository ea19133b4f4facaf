//! The AI side of one exchange: model routing and dialect translation,
//! wired into [`exchange`](super::exchange) at three points — after the
//! body is buffered ([`Ai::inspect`]), per attempt ([`Ai::prepare`], which
//! also filters targets by model) and on the response
//! ([`forward_translated`]). The transformations themselves are pure
//! functions in [`crate::provider`].
//!
//! Model routing needs the JSON body, so it happens only when the body was
//! buffered whole: a `Content-Length` body of at most `--replay-body-bytes`
//! (the same limit that makes a request replayable). Above it — or with a
//! chunked request body — model routing is skipped (any target may serve
//! it) and a request that would need translation is refused with 413.

use serde_json::Value;

use crate::config::snapshot::{Target, Upstream};
use crate::http::BodyKind;
use crate::provider::translate::{self, Direction};
use crate::provider::{self, Format, Usage};
use crate::proxy::plan::{Plan, Targets};

/// Per-request AI state; `Ai::default()` does nothing.
#[derive(Default)]
pub(crate) struct Ai {
    /// The request's model (the body's, or a target's `default_model`).
    pub model: Option<String>,
    /// The client's dialect, when the request is a buffered JSON chat call.
    client: Option<Format>,
    /// A chat call (a POST whose body has `messages`) whose path names no
    /// dialect: it is taken to speak each target's own.
    chat: bool,
    /// The body was buffered and could be inspected.
    inspected: bool,
    pub include_usage: bool,
    stream: bool,
    /// The body, parsed once when a rewrite needs it.
    parsed: Option<Value>,
    /// For the current attempt: the rewritten body and path, and the
    /// response translation.
    pub body: Vec<u8>,
    pub path: Vec<u8>,
    pub rewritten: bool,
    pub translate: Option<Direction>,
    /// Tokens reported by the provider (translated responses).
    pub usage: Usage,
    /// The response body will be rewritten (masked): ask for it
    /// uncompressed.
    pub identity: bool,
    /// The model written into the body for every target: an alias's
    /// concrete model, or a fallback step's.
    forced_model: Option<String>,
}

/// True when some target of the upstream needs the body: it routes by
/// model, needs translation, or takes its Azure deployment from the model.
fn needs_body(up: &Upstream, client: Option<Format>) -> bool {
    up.targets.iter().any(|t| {
        !t.models.is_empty()
            || t.default_model.is_some()
            || client.is_some_and(|c| c != t.format)
            || t.azure.as_ref().is_some_and(|a| a.deployment.is_none())
    })
}

impl Ai {
    /// Reads `model` (and `stream`) from the buffered body when a target
    /// routes by model or needs translation. `Err`: the 400 to answer.
    pub fn inspect(plan: &Plan<'_>, fwd: &[u8], body: &[u8], buffered: bool) -> Result<Ai, String> {
        let mut ai = Ai::default();
        let Targets::Balanced(up) = plan.targets else {
            return Ok(ai);
        };
        let method = &fwd[plan.method.0 as usize..plan.method.1 as usize];
        // The dialect is the client's: the path it called, not what a
        // stripping rule leaves of it.
        let path = &fwd[plan.full_path.0 as usize..plan.full_path.1 as usize];
        let post = method == b"POST";
        let client = if post { Format::of_path(path) } else { None };
        // No dialect in the path: the body may still be a chat call for a
        // provider target, which then gets its provider's endpoint.
        let maybe_chat =
            post && client.is_none() && up.targets.iter().any(|t| t.provider.is_some());
        let needed = needs_body(up, client) || plan.rule.fallback.is_some();
        // SSE keep-alive only wants to know whether it is a stream, and a
        // maybe-chat whether it is one: a body that is no JSON (an upload)
        // is forwarded as before.
        let pings = up.targets.iter().any(|t| t.sse_ping.is_some());
        if !needed && !pings && !maybe_chat {
            return Ok(ai);
        }
        ai.client = client;
        if !buffered || !matches!(plan.body, BodyKind::Length(_)) {
            return Ok(ai);
        }
        let peek = match provider::peek(body) {
            Ok(p) => p,
            Err(_) if !needed => return Ok(ai),
            Err(e) => return Err(e),
        };
        ai.inspected = true;
        ai.chat = maybe_chat && peek.messages.is_some();
        ai.model = peek.model.map(|m| m.into_owned());
        ai.stream = peek.stream == Some(true);
        // A model alias of the rule: the concrete model goes upstream.
        let concrete = (plan.rule.fallback.as_ref())
            .zip(ai.model.as_deref())
            .and_then(|(fb, asked)| fb.alias(asked))
            .map(str::to_owned);
        if let Some(m) = concrete {
            ai.use_model(&m);
        }
        if let Some(m) = &ai.model {
            if !up.targets.iter().any(|t| ai.serves(t)) {
                return Err(format!("model {m:?} is not served by this route"));
            }
        }
        Ok(ai)
    }

    /// Whether `target` may serve this request's model.
    pub fn serves(&self, target: &Target) -> bool {
        match &self.model {
            Some(m) if self.inspected => {
                target.models.is_empty() || target.models.iter().any(|x| x == m)
            }
            _ => true,
        }
    }

    /// Whether the body was read as JSON (its model can be rewritten).
    pub fn inspected(&self) -> bool {
        self.inspected
    }

    /// Sends `model` to every target from now on (an alias's or a fallback
    /// step's concrete model).
    pub fn use_model(&mut self, model: &str) {
        self.model = Some(model.to_owned());
        self.forced_model = Some(model.to_owned());
    }

    /// The model the body sent to `target` names, when known.
    pub fn sent_model<'a>(&'a self, target: &'a Target) -> Option<&'a str> {
        self.model
            .as_deref()
            .or(target.default_model.as_deref().filter(|_| self.inspected))
    }

    /// Whether the client asked for a stream (`"stream": true` in a body
    /// that was inspected).
    pub fn streaming(&self) -> bool {
        self.stream
    }

    /// The client's dialect toward `target`, for a chat call.
    fn dialect(&self, target: &Target) -> Option<Format> {
        self.client.or(self.chat.then_some(target.format))
    }

    /// Makes the body and path for `target`; `fwd_path` is what the rule
    /// forwards (the rest after a stripped rule path, else the whole path)
    /// and `whole` says the target's path replaces it (a rule without
    /// `strip_path`). `Err((status, message))`: refuse the request.
    pub fn prepare(
        &mut self,
        target: &Target,
        fwd_path: &[u8],
        whole: bool,
        body: &[u8],
    ) -> Result<(), (u16, String)> {
        self.prepare_body(target, body)?;
        self.path.clear();
        let dialect = self.dialect(target);
        // A chat call to a provider target (or translated) goes to its
        // provider's endpoint, whatever the rule left of the client's path.
        let endpoint = dialect.filter(|_| self.translate.is_some() || target.provider.is_some());
        if let Some(az) = &target.azure {
            // Its `path` is a prefix before the deployment, never the whole path.
            let mut ep = Vec::new();
            match endpoint {
                Some(c) => provider::endpoint_path(fwd_path, c, target.format, &mut ep),
                None => ep.extend_from_slice(fwd_path),
            }
            return self.azure_path(target, az, &ep);
        }
        let rest: &[u8] = if whole && !target.path.is_empty() {
            b""
        } else {
            fwd_path
        };
        if let Some(c) = endpoint {
            let mut base = target.path.as_bytes().to_vec();
            base.extend_from_slice(rest);
            provider::endpoint_path(&base, c, target.format, &mut self.path);
        }
        Ok(())
    }

    /// The deployment path of an `azure` target (the `api-version` query is
    /// added by [`push_query`]); `endpoint` is the forwarded path, already
    /// turned into the target's endpoint for a chat call.
    fn azure_path(
        &mut self,
        target: &Target,
        az: &crate::provider::azure::Azure,
        endpoint: &[u8],
    ) -> Result<(), (u16, String)> {
        if az.deployment.is_none() && !self.inspected {
            return Err((
                413,
                "request body too large (or chunked) to find its Azure deployment from the model"
                    .into(),
            ));
        }
        let model = self
            .model
            .as_deref()
            .or(target.default_model.as_deref().filter(|_| self.inspected));
        let deployment = az.deployment(model).map_err(|e| (400, e))?;
        az.push_path(&target.path, deployment, endpoint, &mut self.path);
        Ok(())
    }

    fn prepare_body(&mut self, target: &Target, body: &[u8]) -> Result<(), (u16, String)> {
        self.rewritten = false;
        self.translate = None;
        let translate_to = self.client.filter(|&c| c != target.format);
        if translate_to.is_some() && !self.inspected {
            return Err((
                413,
                "request body too large (or chunked) to translate for this provider".into(),
            ));
        }
        let fill_model = self.model.is_none() && target.default_model.is_some() && self.inspected;
        let force = self.forced_model.as_ref().filter(|_| self.inspected);
        if translate_to.is_none() && !fill_model && force.is_none() {
            return Ok(());
        }
        if self.parsed.is_none() {
            // Parsed once per request, only when some target needs a rewrite.
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| (400, format!("invalid JSON body: {e}")))?;
            self.parsed = Some(v);
        }
        let mut v = self.parsed.clone().unwrap_or_default();
        if fill_model {
            v["model"] = Value::String(target.default_model.clone().unwrap_or_default());
        }
        if let Some(m) = force {
            v["model"] = Value::String(m.clone());
        }
        if let Some(client) = translate_to {
            self.include_usage = v
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                == Some(true);
            v = match (client, target.format) {
                (Format::OpenAi, _) => {
                    self.translate = Some(Direction::AnthropicToOpenAi);
                    translate::openai_to_anthropic_request(&v)
                }
                (Format::Anthropic, _) => {
                    self.translate = Some(Direction::OpenAiToAnthropic);
                    translate::anthropic_to_openai_request(&v)
                }
            }
            .map_err(|e| (400, e))?;
        }
        self.body.clear();
        serde_json::to_writer(&mut self.body, &v).map_err(|e| (500, e.to_string()))?;
        self.rewritten = true;
        Ok(())
    }

    /// Request headers not forwarded under translation or response
    /// masking: the upstream must answer uncompressed, and (translated)
    /// dialect-specific headers mean nothing to the other side.
    pub fn drops_header(&self, name: &[u8]) -> bool {
        if self.identity && name.eq_ignore_ascii_case(b"accept-encoding") {
            return true;
        }
        self.translate.is_some()
            && [
                &b"accept-encoding"[..],
                b"anthropic-version",
                b"anthropic-beta",
                b"openai-organization",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
    }
}

/// Appends the upstream query: the client's, for an `azure` target its
/// `api-version`, and a credential sent as a query parameter.
pub(crate) fn push_query(out: &mut Vec<u8>, target: &Target, client: Option<&[u8]>) {
    let start = out.len();
    match &target.azure {
        Some(az) => az.push_query(client, out),
        None => {
            if let Some(q) = client.filter(|q| !q.is_empty()) {
                out.push(b'?');
                out.extend_from_slice(q);
            }
        }
    }
    if let Some(extra) = &target.query {
        out.push(if out.len() > start { b'&' } else { b'?' });
        out.extend_from_slice(extra.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled form of one configured target.
    fn compiled(t: serde_json::Value) -> Target {
        let cfg = serde_json::json!({"gateways": [{"name": "g",
            "upstreams": [{"name": "u", "targets": [t]}]}]});
        let cfg =
            crate::config::load(cfg.to_string().as_bytes(), std::time::SystemTime::now()).unwrap();
        let mut snap = crate::config::compile(&cfg, 1).unwrap();
        snap.gateways
            .remove(0)
            .upstreams
            .remove(0)
            .targets
            .remove(0)
    }

    fn azure_target(deployment: Option<&str>) -> Target {
        let mut t = serde_json::json!({"host": "127.0.0.1", "port": 9, "provider": "azure",
                                       "path": "/az", "credentials": {"api_key": "k"}});
        if let Some(d) = deployment {
            t["azure_deployment"] = d.into();
        }
        compiled(t)
    }

    fn provider_target(provider: &str, path: Option<&str>) -> Target {
        let mut t = serde_json::json!({"provider": provider, "credentials": {"api_key": "k"}});
        if let Some(p) = path {
            t["path"] = p.into();
        }
        compiled(t)
    }

    /// A chat call reaches a provider target's endpoint whatever the rule
    /// left of the client's path; a target `path` naming the endpoint (as
    /// TrustGate configurations do) is the whole path.
    #[test]
    fn provider_targets_get_their_endpoint() {
        let body = br#"{"model":"m","messages":[]}"#;
        let openai_client = || Ai {
            client: Some(Format::OpenAi),
            inspected: true,
            ..Ai::default()
        };
        let mut ai = openai_client();
        ai.prepare(&provider_target("anthropic", None), b"/", true, body)
            .unwrap();
        assert_eq!(
            (ai.path.as_slice(), ai.translate.is_some()),
            (&b"/v1/messages"[..], true)
        );
        let mut ai = openai_client();
        ai.prepare(&provider_target("openai", None), b"", false, body)
            .unwrap();
        assert_eq!(ai.path, b"/v1/chat/completions");
        // Rule without strip_path, target path = the endpoint.
        let mut ai = openai_client();
        let t = provider_target("openai", Some("/v1/chat/completions"));
        ai.prepare(&t, b"/chat", true, body).unwrap();
        assert_eq!(ai.path, b"/v1/chat/completions");
        // A chat body on a path that names no dialect speaks the target's.
        let mut ai = Ai {
            chat: true,
            inspected: true,
            ..Ai::default()
        };
        ai.prepare(&provider_target("anthropic", None), b"/", false, body)
            .unwrap();
        assert_eq!(
            (ai.path.as_slice(), ai.translate.is_some()),
            (&b"/v1/messages"[..], false)
        );
        // Azure from its endpoint fields.
        let t = compiled(serde_json::json!({"provider": "azure", "models": ["m"],
            "credentials": {"api_key": "k", "azure_endpoint": "https://res.openai.azure.com"},
            "azure_deployment": "dep"}));
        let mut ai = openai_client();
        ai.prepare(&t, b"/", true, body).unwrap();
        assert_eq!(ai.path, b"/openai/deployments/dep/chat/completions");
    }

    #[test]
    fn azure_paths_follow_translation() {
        let body = br#"{"model":"claude-x","max_tokens":8,"messages":[]}"#;
        let mut ai = Ai {
            client: Some(Format::Anthropic),
            inspected: true,
            model: Some("claude-x".into()),
            ..Ai::default()
        };
        ai.prepare(&azure_target(Some("dep")), b"/v1/messages", false, body)
            .unwrap();
        assert!(matches!(ai.translate, Some(Direction::OpenAiToAnthropic)));
        assert_eq!(ai.path, b"/az/openai/deployments/dep/chat/completions");
        // Without a fixed deployment the model names it.
        ai.prepare(&azure_target(None), b"/v1/messages", false, body)
            .unwrap();
        assert_eq!(ai.path, b"/az/openai/deployments/claude-x/chat/completions");
        // Not inspected (a large body): no model to name the deployment.
        let mut big = Ai {
            client: Some(Format::OpenAi),
            ..Ai::default()
        };
        let err = big
            .prepare(&azure_target(None), b"/v1/chat/completions", false, b"")
            .unwrap_err();
        assert_eq!(err.0, 413);
        big.prepare(
            &azure_target(Some("dep")),
            b"/v1/chat/completions",
            false,
            b"",
        )
        .unwrap();
        assert_eq!(big.path, b"/az/openai/deployments/dep/chat/completions");
    }
}
