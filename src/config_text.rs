//! Config files with command-line overrides (`--set KEY=VALUE`): one YAML
//! text for every tool that reads a config (training, evaluation, dataset
//! export), below them all.

use std::path::Path;

use serde_norway::Value;

use crate::error::{Error, Result};

/// The YAML text of a config file with `key=value` overrides applied
/// (values parsed as YAML; dotted keys address nested mappings).
pub fn config_text(path: &Path, overrides: &[String]) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    if overrides.is_empty() {
        return Ok(text);
    }
    let bad = |message: String| Error::Config { path: path.to_owned(), message };
    let mut value: Value = serde_norway::from_str(&text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    for item in overrides {
        let (key, raw) = item.split_once('=').ok_or_else(|| bad(format!("--set {item:?} is not key=value")))?;
        let parsed: Value = if raw.is_empty() {
            Value::String(String::new())
        } else {
            serde_norway::from_str(raw).map_err(|e| bad(format!("--set {key}: {e}")))?
        };
        let mut node = &mut value;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map = node.as_mapping_mut().ok_or_else(|| bad(format!("--set {key}: not a mapping at {part:?}")))?;
            if i + 1 == parts.len() {
                map.insert(Value::String(part.to_string()), parsed.clone());
                break;
            }
            node = map.entry(Value::String(part.to_string())).or_insert_with(|| Value::Mapping(Default::default()));
        }
    }
    serde_norway::to_string(&value).map_err(|e| bad(e.to_string()))
}
