//! Where a provider target without `host` goes: its provider's public HTTPS
//! endpoint, as TrustGate configures provider targets (`provider`,
//! `models`, `default_model`, `credentials`, no host or port). OpenAI,
//! Anthropic and Mistral (OpenAI-compatible) have fixed hosts; Azure's host
//! is the resource in `credentials.azure_endpoint`
//! (`https://<resource>.openai.azure.com`). The path is the provider's
//! endpoint (see [`super::endpoint_path`]), or the target's `path` when it
//! names one.

use crate::config::model::{Protocol, Target};

/// A resolved `host`, `port` and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// The public endpoint of `t`'s provider. `Err`: why there is none (the
/// target then needs `host`).
pub fn public(t: &Target) -> Result<Public, String> {
    let Some(provider) = t.provider.as_deref() else {
        return Err("a target needs host (or a provider with a public endpoint)".into());
    };
    let fixed = |host: &str| {
        Ok(Public {
            host: host.to_string(),
            port: 443,
            protocol: Protocol::Https,
        })
    };
    match provider.to_ascii_lowercase().as_str() {
        "openai" => fixed("api.openai.com"),
        "anthropic" => fixed("api.anthropic.com"),
        "mistral" => fixed("api.mistral.ai"),
        "azure" => {
            let url = t
                .credentials
                .as_ref()
                .and_then(|c| c.azure_endpoint.as_deref())
                .ok_or("an azure target without host needs credentials.azure_endpoint")?;
            azure_endpoint(url)
        }
        other => Err(format!(
            "provider {other:?} has no public endpoint ringgate knows (openai, anthropic, mistral, azure): give host and port"
        )),
    }
}

/// `https://<host>[:port][/]` → its parts. Only HTTPS: the key travels in
/// a header.
fn azure_endpoint(url: &str) -> Result<Public, String> {
    let bad = || format!("{url:?} is not an https://host[:port] URL");
    let rest = url.trim().strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?),
        None => (authority, 443),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Public {
        host: host.to_string(),
        port,
        protocol: Protocol::Https,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Credentials;

    fn target(v: serde_json::Value) -> Target {
        serde_json::from_value(v).unwrap()
    }

    fn https(host: &str, port: u16) -> Public {
        Public {
            host: host.into(),
            port,
            protocol: Protocol::Https,
        }
    }

    #[test]
    fn providers_resolve_to_their_public_https_endpoints() {
        let t = |p: &str| {
            target(
                serde_json::json!({"provider": p, "models": ["m"], "default_model": "m",
                                                  "credentials": {"api_key": "k"}}),
            )
        };
        assert_eq!(public(&t("openai")), Ok(https("api.openai.com", 443)));
        assert_eq!(public(&t("Anthropic")), Ok(https("api.anthropic.com", 443)));
        assert_eq!(public(&t("mistral")), Ok(https("api.mistral.ai", 443)));
        assert!(public(&t("bedrock"))
            .unwrap_err()
            .contains("give host and port"));
        assert!(public(&target(serde_json::json!({}))).is_err());
    }

    #[test]
    fn azure_resolves_from_its_endpoint_field() {
        let az = |endpoint: Option<&str>| {
            let mut t = target(serde_json::json!({"provider": "azure"}));
            t.credentials = Some(Credentials {
                api_key: Some("k".into()),
                azure_endpoint: endpoint.map(str::to_string),
                ..Credentials::default()
            });
            public(&t)
        };
        assert_eq!(
            az(Some("https://my-res.openai.azure.com/")),
            Ok(https("my-res.openai.azure.com", 443))
        );
        assert_eq!(
            az(Some("https://my-res.openai.azure.com:8443")),
            Ok(https("my-res.openai.azure.com", 8443))
        );
        for bad in [
            "http://x.openai.azure.com",
            "https://",
            "https://h/path",
            "https://h:0",
        ] {
            assert!(az(Some(bad)).is_err(), "{bad}");
        }
        assert!(az(None).unwrap_err().contains("azure_endpoint"));
    }
}
