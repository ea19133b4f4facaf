//! The refusal every configuration step returns: [`ConfigError`], with its
//! [`ErrorKind`] (the admin API's 400, 404 or 409) and the JSON path of the
//! offending field.

use std::fmt;

/// What kind of refusal a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed, missing or dangling: 400.
    Invalid,
    /// A duplicate name, id, subdomain, key or rule path: 409.
    Conflict,
    /// 404.
    NotFound,
}

/// A refused configuration: `{"error": ..., "field": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub error: String,
    /// JSON path of the offending field, e.g. `gateways[0].rules[2].service`.
    pub field: Option<String>,
}

impl ConfigError {
    pub fn invalid(error: impl Into<String>, field: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::Invalid,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    pub fn conflict(error: impl Into<String>, field: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::Conflict,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(error: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::NotFound,
            error: error.into(),
            field: None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::Conflict => 409,
            ErrorKind::NotFound => 404,
        }
    }

    /// The response body: `{"error": "...", "field": "..."}` (no `field`
    /// when there is none).
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.error });
        if let Some(f) = &self.field {
            body["field"] = serde_json::Value::String(f.clone());
        }
        body
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

impl std::error::Error for ConfigError {}
