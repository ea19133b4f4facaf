//! A rule's model fallbacks and aliases: the configured form, its
//! validation and its compiled form (read by `proxy::fallback`).
//!
//! ```json
//! "fallbacks": [{"upstream": "anthropic", "model": "claude-3-5-haiku-latest"}],
//! "model_aliases": {"fast": "gpt-4o-mini"}
//! ```
//!
//! `fallbacks` is tried in order after the rule's own service (step 0)
//! fails; each step names an upstream of the same gateway (by name or id)
//! and the concrete model sent to it. `model_aliases` maps the model a
//! client asks for to the one step 0 receives; a step's own `model` always
//! wins over the alias.

use std::collections::{BTreeMap, HashMap};

use super::error::ConfigError;
use super::model;

/// Longest fallback chain (steps after the primary): each step may wait a
/// whole upstream timeout, so the chain bounds the request's time too.
pub const MAX_STEPS: usize = 4;
/// Most aliases per rule.
pub const MAX_ALIASES: usize = 64;
/// Longest model name (and alias).
pub const MAX_MODEL_LEN: usize = 256;

/// The compiled form on a snapshot rule.
#[derive(Debug, Default)]
pub struct Fallback {
    /// (index into the gateway's upstreams, model), in order.
    pub steps: Vec<(usize, String)>,
    pub aliases: HashMap<String, String>,
}

impl Fallback {
    /// The concrete model for what the client asked.
    pub fn alias(&self, asked: &str) -> Option<&str> {
        self.aliases.get(asked).map(String::as_str)
    }
}

fn find_upstream(ups: &[model::Upstream], name: &str) -> Option<usize> {
    ups.iter()
        .position(|u| u.id.as_deref() == Some(name))
        .or_else(|| ups.iter().position(|u| u.name == name))
}

fn check_model(model: &str, what: &str, field: String) -> Result<(), ConfigError> {
    if model.trim().is_empty() {
        return Err(ConfigError::invalid(
            format!("{what} must not be empty"),
            field,
        ));
    }
    if model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            format!("{what} must be at most {MAX_MODEL_LEN} bytes without control characters"),
            field,
        ));
    }
    Ok(())
}

/// Validates a rule's `fallbacks` and `model_aliases`; `rp` is the rule's
/// JSON path.
pub fn check(rule: &model::Rule, gw: &model::Gateway, rp: &str) -> Result<(), ConfigError> {
    let (steps, aliases, ups) = (&rule.fallbacks, &rule.model_aliases, &gw.upstreams);
    if steps.is_empty() && aliases.is_empty() {
        return Ok(());
    }
    // An endpoint service's body is never read as JSON: no model to rewrite.
    let endpoint = gw.services.iter().any(|s| {
        s.id.is_some() && s.id == rule.service_id && s.kind == model::ServiceType::Endpoint
    });
    if endpoint {
        return Err(ConfigError::invalid(
            "model fallbacks and aliases need a service of type upstream",
            format!("{rp}.fallbacks"),
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(ConfigError::invalid(
            format!("at most {MAX_STEPS} fallback steps"),
            format!("{rp}.fallbacks"),
        ));
    }
    for (i, s) in steps.iter().enumerate() {
        let sp = format!("{rp}.fallbacks[{i}]");
        if find_upstream(ups, &s.upstream).is_none() {
            return Err(ConfigError::invalid(
                format!("no upstream named {:?} in this gateway", s.upstream),
                format!("{sp}.upstream"),
            ));
        }
        check_model(&s.model, "model", format!("{sp}.model"))?;
    }
    if aliases.len() > MAX_ALIASES {
        return Err(ConfigError::invalid(
            format!("at most {MAX_ALIASES} model aliases"),
            format!("{rp}.model_aliases"),
        ));
    }
    for (alias, model) in aliases {
        let field = format!("{rp}.model_aliases.{alias}");
        check_model(alias, "an alias", field.clone())?;
        check_model(model, "an alias's model", field)?;
    }
    Ok(())
}

/// The compiled form, `None` when the rule has neither.
pub fn compile(
    steps: &[model::FallbackStep],
    aliases: &BTreeMap<String, String>,
    ups: &[model::Upstream],
) -> Option<Box<Fallback>> {
    if steps.is_empty() && aliases.is_empty() {
        return None;
    }
    Some(Box::new(Fallback {
        steps: steps
            .iter()
            .filter_map(|s| Some((find_upstream(ups, &s.upstream)?, s.model.clone())))
            .collect(),
        aliases: aliases
            .iter()
            .map(|(a, m)| (a.clone(), m.clone()))
            .collect(),
    }))
}
