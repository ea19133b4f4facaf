//! Azure OpenAI: the OpenAI dialect behind a deployment path and an
//! `api-version` query, authenticated by an `api-key` header.
//!
//! A client calls ringgate as it would call OpenAI
//! (`POST /v1/chat/completions`); an `azure` target sends it to
//! `{target path}/openai/deployments/{deployment}/chat/completions?api-version={v}`.
//! The endpoint is the forwarded path from after its `/v1` segment (or the
//! whole forwarded path when it has none), so a rule on `/v1` works with or
//! without `strip_path`. The deployment is the target's `azure_deployment`,
//! else the request's `model` (Azure deployments are commonly named after
//! their model). The client's own `api-version` query parameter, when it
//! sends one (as Azure's SDKs do), wins over the target's (`api_version`,
//! or TrustGate's `credentials.azure_version`). A target without `host`
//! reaches the resource in `credentials.azure_endpoint` (see
//! [`super::endpoint`]).

use crate::config::error::ConfigError;
use crate::config::model::Target;

/// What a compiled `azure` target needs per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Azure {
    /// `None`: the request's model names the deployment.
    pub deployment: Option<String>,
    pub api_version: String,
}

impl Azure {
    /// From a configured target; `None` unless its provider is `azure`.
    pub fn of(t: &Target) -> Option<Azure> {
        if !is_azure(t.provider.as_deref()) {
            return None;
        }
        Some(Azure {
            deployment: t.azure_deployment.clone(),
            api_version: t
                .api_version
                .clone()
                .or_else(|| t.credentials.as_ref()?.azure_version.clone())
                .unwrap_or_else(|| crate::config::model::AZURE_API_VERSION.to_string()),
        })
    }

    /// The deployment for a request whose model is `model`. `Err`: the 400
    /// to answer.
    pub fn deployment<'a>(&'a self, model: Option<&'a str>) -> Result<&'a str, String> {
        match (&self.deployment, model) {
            (Some(d), _) => Ok(d),
            (None, Some(m)) if is_name(m) => Ok(m),
            (None, Some(m)) => Err(format!(
                "model {m:?} cannot name an Azure deployment (letters, digits, '.', '_', '-')"
            )),
            (None, None) => Err(
                "this Azure target needs the request's \"model\" (or the target's azure_deployment)"
                    .into(),
            ),
        }
    }

    /// Appends the upstream path: `prefix` (the target's path) +
    /// `/openai/deployments/{deployment}` + the endpoint of `forwarded`.
    pub fn push_path(&self, prefix: &str, deployment: &str, forwarded: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"/openai/deployments/");
        out.extend_from_slice(deployment.as_bytes());
        out.extend_from_slice(endpoint(forwarded));
    }

    /// The query to send: the client's (if any), plus `api-version` unless
    /// the client sent one.
    pub fn push_query(&self, client: Option<&[u8]>, out: &mut Vec<u8>) {
        out.push(b'?');
        if let Some(q) = client {
            out.extend_from_slice(q);
            if q.split(|&b| b == b'&')
                .any(|p| p.starts_with(b"api-version="))
            {
                return;
            }
            if !q.is_empty() {
                out.push(b'&');
            }
        }
        out.extend_from_slice(b"api-version=");
        out.extend_from_slice(self.api_version.as_bytes());
    }
}

pub fn is_azure(provider: Option<&str>) -> bool {
    provider.is_some_and(|p| p.eq_ignore_ascii_case("azure"))
}

/// The forwarded path from after its first `/v1` segment
/// (`/v1/chat/completions` → `/chat/completions`), or all of it.
fn endpoint(forwarded: &[u8]) -> &[u8] {
    let mut i = 0;
    while i + 3 <= forwarded.len() {
        if &forwarded[i..i + 3] == b"/v1" && (i + 3 == forwarded.len() || forwarded[i + 3] == b'/')
        {
            return &forwarded[i + 3..];
        }
        i += 1;
    }
    forwarded
}

/// A deployment name or api-version: safe in a path or query unescaped.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The admin API's checks of the Azure fields of target `tp`.
pub fn check_target(t: &Target, tp: &str) -> Result<(), ConfigError> {
    let azure = is_azure(t.provider.as_deref());
    let creds = t.credentials.as_ref();
    for (value, name) in [
        (&t.azure_deployment, "azure_deployment"),
        (&t.api_version, "api_version"),
        (
            creds.map_or(&None, |c| &c.azure_version),
            "credentials.azure_version",
        ),
    ] {
        let Some(v) = value else { continue };
        if !azure {
            return Err(ConfigError::invalid(
                "only for provider \"azure\"",
                format!("{tp}.{name}"),
            ));
        }
        if !is_name(v) {
            return Err(ConfigError::invalid(
                "must be 1 to 128 letters, digits, '.', '_' or '-'",
                format!("{tp}.{name}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure(deployment: Option<&str>) -> Azure {
        Azure {
            deployment: deployment.map(str::to_string),
            api_version: "2024-10-21".into(),
        }
    }

    fn path(a: &Azure, prefix: &str, model: Option<&str>, fwd: &str) -> String {
        let mut out = Vec::new();
        let d = a.deployment(model).unwrap();
        a.push_path(prefix, d, fwd.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn deployment_paths() {
        let fixed = azure(Some("prod-gpt4o"));
        assert_eq!(
            path(&fixed, "", Some("gpt-4o"), "/v1/chat/completions"),
            "/openai/deployments/prod-gpt4o/chat/completions"
        );
        assert_eq!(
            path(&fixed, "/az", None, "/chat/completions"),
            "/az/openai/deployments/prod-gpt4o/chat/completions"
        );
        assert_eq!(
            path(&fixed, "", None, "/azure/v1/embeddings"),
            "/openai/deployments/prod-gpt4o/embeddings"
        );
        // "/v1x" is no /v1 segment.
        assert_eq!(
            path(&fixed, "", None, "/v1x/chat/completions"),
            "/openai/deployments/prod-gpt4o/v1x/chat/completions"
        );
        let by_model = azure(None);
        assert_eq!(
            path(&by_model, "", Some("gpt-4o-mini"), "/v1/chat/completions"),
            "/openai/deployments/gpt-4o-mini/chat/completions"
        );
        assert!(by_model.deployment(None).is_err());
        assert!(by_model.deployment(Some("../admin")).is_err());
        assert!(by_model.deployment(Some("a b")).is_err());
    }

    #[test]
    fn api_version_query() {
        let a = azure(None);
        let q = |client: Option<&str>| {
            let mut out = Vec::new();
            a.push_query(client.map(str::as_bytes), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q(None), "?api-version=2024-10-21");
        assert_eq!(q(Some("")), "?api-version=2024-10-21");
        assert_eq!(q(Some("x=1")), "?x=1&api-version=2024-10-21");
        assert_eq!(
            q(Some("api-version=2025-01-01-preview")),
            "?api-version=2025-01-01-preview"
        );
        assert_eq!(q(Some("x=1&api-version=2")), "?x=1&api-version=2");
    }
}
