//! The configuration document's JSON, read into a [`Config`] with the path
//! of any field that does not fit.

use super::error::{ConfigError, ErrorKind};
use super::model::Config;

/// Parses a configuration document. A JSON syntax error has no `field`; an
/// unknown field, a missing field, a wrong type or a bad enum value names
/// its JSON path.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    let cfg: Config = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(inner, Some(path))
    })?;
    de.end().map_err(|e| json_error(e, None))?;
    Ok(cfg)
}

fn json_error(e: serde_json::Error, path: Option<String>) -> ConfigError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let msg = e.to_string();
            let mut field = path.filter(|p| p != ".");
            // A missing field is reported on its parent object: name it.
            if let Some(name) = msg
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = Some(match field {
                    Some(parent) => format!("{parent}.{name}"),
                    None => name.to_string(),
                });
            }
            ConfigError {
                kind: ErrorKind::Invalid,
                error: msg,
                field,
            }
        }
        _ => ConfigError {
            kind: ErrorKind::Invalid,
            error: format!("invalid JSON: {e}"),
            field: None,
        },
    }
}
