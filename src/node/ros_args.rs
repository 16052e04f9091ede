//! Which value a start-up parameter really has when the command line and a
//! params file both set it. rcl keeps every value it parses for a name in
//! one variant with a field per type, and replaces only the field of the
//! new value's type: after `--params-file f.yaml` (with `cameras: ""`) and
//! `-p "cameras:=[front, rear]"` the variant holds the string and the array,
//! and every client library (r2r, rclpy, rclcpp alike) reads the fields in a
//! fixed order, bool first, arrays last, so the file's string wins. The same
//! happens to an integer given for a double (`-p min_range:=1` beside the
//! file's `0.0` is read as the integer) and the reverse (`-p
//! output_width:=320.0` is lost beside the file's `0`).
//!
//! The fix reads the `--ros-args` the process was given, in order, and
//! takes each parameter's value from the last source that sets it, typed
//! as rcl types it (YAML scalars: quoted means a string; `true`/`yes`/`on`
//! ... a bool; then an integer, a double, else a string).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parameter value as the command line or a params file gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    String(String),
    BoolArray(Vec<bool>),
    IntegerArray(Vec<i64>),
    DoubleArray(Vec<f64>),
    StringArray(Vec<String>),
}

/// Where start-up parameter values come from, in command-line order.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `--params-file PATH`.
    File(PathBuf),
    /// `-p NAME:=VALUE` / `--param NAME:=VALUE` (VALUE as YAML text).
    Param { name: String, value: String },
}

/// ROS arguments that take a value: skipped with it.
const WITH_VALUE: [&str; 7] = ["-r", "--remap", "-e", "--enclave", "--log-level", "--log-config-file", "--log-file-name"];

/// The parameter sources of the `--ros-args` sections of `args` (program
/// name first, as `std::env::args` gives them), in order.
pub fn parameter_sources(args: &[String]) -> Vec<Source> {
    let mut sources = Vec::new();
    let mut in_ros = false;
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        match arg {
            "--ros-args" => in_ros = true,
            "--" if in_ros => in_ros = false,
            _ if !in_ros => {}
            "-p" | "--param" => {
                if let Some((name, value)) = args.get(i).and_then(|a| a.split_once(":=")) {
                    sources.push(Source::Param { name: name.to_string(), value: value.to_string() });
                }
                i += 1;
            }
            "--params-file" => {
                if let Some(path) = args.get(i) {
                    sources.push(Source::File(PathBuf::from(path)));
                }
                i += 1;
            }
            a if WITH_VALUE.contains(&a) => i += 1,
            _ => {}
        }
    }
    sources
}

/// The values of the parameters that more than one source sets, each from
/// the last source that sets it. `node_names` are the names a params file
/// may give the node's section under (`clip_depth`, `/ns/clip_depth`);
/// `/**` and `**` always apply. Files are read here; one that cannot be
/// read was refused by rcl before the node started, and is passed over.
pub fn last_values(sources: &[Source], node_names: &[&str]) -> Result<Vec<(String, ArgValue)>, String> {
    let mut seen: BTreeMap<String, (usize, ArgValue)> = BTreeMap::new();
    for source in sources {
        let values = match source {
            Source::Param { name, value } => {
                vec![(name.clone(), scalar_or_list(value).map_err(|e| format!("parameter {name}: {e}"))?)]
            }
            Source::File(path) => match file_values(path, node_names) {
                Some(values) => values,
                None => continue,
            },
        };
        for (name, value) in values {
            let times = seen.get(&name).map_or(0, |(n, _)| *n);
            seen.insert(name, (times + 1, value));
        }
    }
    Ok(seen.into_iter().filter(|(_, (times, _))| *times > 1).map(|(name, (_, value))| (name, value)).collect())
}

/// The values a params file sets for the node: every section that applies,
/// nested keys joined with dots, in file order.
fn file_values(path: &Path, node_names: &[&str]) -> Option<Vec<(String, ArgValue)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let root: serde_norway::Value = serde_norway::from_str(&text).ok()?;
    let mut out = Vec::new();
    for (key, section) in root.as_mapping()? {
        let key = key.as_str().unwrap_or_default();
        let applies = key == "/**" || key == "**" || node_names.iter().any(|n| n.trim_start_matches('/') == key.trim_start_matches('/'));
        if let (true, Some(params)) = (applies, section.get("ros__parameters")) {
            flatten("", params, &mut out);
        }
    }
    Some(out)
}

fn flatten(prefix: &str, value: &serde_norway::Value, out: &mut Vec<(String, ArgValue)>) {
    use serde_norway::Value;
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other).unwrap_or_default().trim().to_string(),
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(&name, v, out);
            }
        }
        other => {
            if let Some(v) = yaml_value(other) {
                out.push((prefix.to_string(), v));
            }
        }
    }
}

/// A params file's value, as rcl reads it (numbers and bools by YAML's
/// typing; a list of one type).
fn yaml_value(value: &serde_norway::Value) -> Option<ArgValue> {
    use serde_norway::Value;
    let scalar = |v: &Value| -> Option<ArgValue> {
        Some(match v {
            Value::Bool(b) => ArgValue::Bool(*b),
            Value::Number(n) if n.is_i64() => ArgValue::Integer(n.as_i64()?),
            Value::Number(n) => ArgValue::Double(n.as_f64()?),
            Value::String(s) => ArgValue::String(s.clone()),
            _ => return None,
        })
    };
    match value {
        Value::Sequence(items) => list(items.iter().map(scalar).collect::<Option<Vec<_>>>()?).ok(),
        other => scalar(other),
    }
}

/// A command-line value (`-p NAME:=VALUE`): a YAML scalar or flow list.
pub fn scalar_or_list(text: &str) -> Result<ArgValue, String> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let items = split_flow(inner)?;
        return list(items.iter().map(|i| scalar(i)).collect());
    }
    Ok(scalar(t))
}

/// The items of a flow sequence's inside, split at top-level commas.
fn split_flow(inner: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, ',') => items.push(std::mem::take(&mut current)),
            (None, '[' | ']' | '{' | '}') => return Err(format!("nested lists or maps are not parameter values: [{inner}]")),
            (None, c) => current.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in [{inner}]"));
    }
    if !current.trim().is_empty() || !items.is_empty() {
        items.push(current);
    }
    Ok(items.into_iter().map(|s| s.trim().to_string()).collect())
}

/// One YAML scalar typed as rcl types it.
fn scalar(text: &str) -> ArgValue {
    let t = text.trim();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            let inner = &t[1..t.len() - 1];
            return ArgValue::String(if q == '\'' { inner.replace("''", "'") } else { inner.replace("\\\"", "\"") });
        }
    }
    const TRUE: [&str; 11] = ["Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"];
    const FALSE: [&str; 11] = ["N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"];
    if TRUE.contains(&t) {
        return ArgValue::Bool(true);
    }
    if FALSE.contains(&t) {
        return ArgValue::Bool(false);
    }
    if let Ok(i) = t.parse::<i64>() {
        return ArgValue::Integer(i);
    }
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return ArgValue::Double(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return ArgValue::Double(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ArgValue::Double(f64::NAN),
        _ => {}
    }
    if t.chars().any(|c| c.is_ascii_digit()) {
        if let Ok(d) = t.parse::<f64>() {
            return ArgValue::Double(d);
        }
    }
    ArgValue::String(t.to_string())
}

/// A list of scalars of one type (integers among doubles become doubles);
/// an empty list is an empty list of strings.
fn list(items: Vec<ArgValue>) -> Result<ArgValue, String> {
    let all = |f: fn(&ArgValue) -> bool| items.iter().all(f);
    if items.is_empty() {
        return Ok(ArgValue::StringArray(Vec::new()));
    }
    if all(|v| matches!(v, ArgValue::Bool(_))) {
        return Ok(ArgValue::BoolArray(items.iter().map(|v| matches!(v, ArgValue::Bool(true))).collect()));
    }
    if all(|v| matches!(v, ArgValue::Integer(_))) {
        return Ok(ArgValue::IntegerArray(items.iter().filter_map(|v| if let ArgValue::Integer(i) = v { Some(*i) } else { None }).collect()));
    }
    if all(|v| matches!(v, ArgValue::Integer(_) | ArgValue::Double(_))) {
        let as_f64 = |v: &ArgValue| match v {
            ArgValue::Integer(i) => *i as f64,
            ArgValue::Double(d) => *d,
            _ => unreachable!("checked above"),
        };
        return Ok(ArgValue::DoubleArray(items.iter().map(as_f64).collect()));
    }
    if all(|v| matches!(v, ArgValue::String(_))) {
        return Ok(ArgValue::StringArray(items.into_iter().filter_map(|v| if let ArgValue::String(s) = v { Some(s) } else { None }).collect()));
    }
    Err("a list must hold values of one type".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("node").chain(list.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn scalars_are_typed_as_rcl_types_them() {
        assert_eq!(scalar("1"), ArgValue::Integer(1));
        assert_eq!(scalar("-3"), ArgValue::Integer(-3));
        assert_eq!(scalar("1.0"), ArgValue::Double(1.0));
        assert_eq!(scalar("1e3"), ArgValue::Double(1000.0));
        assert_eq!(scalar("yes"), ArgValue::Bool(true));
        assert_eq!(scalar("False"), ArgValue::Bool(false));
        assert_eq!(scalar("'1'"), ArgValue::String("1".into()));
        assert_eq!(scalar("\"true\""), ArgValue::String("true".into()));
        assert_eq!(scalar("cuda:0"), ArgValue::String("cuda:0".into()));
        assert_eq!(scalar("inf"), ArgValue::String("inf".into()));
        assert_eq!(scalar(".inf"), ArgValue::Double(f64::INFINITY));
    }

    #[test]
    fn lists_are_typed_by_their_items() {
        let strings = |v: &[&str]| ArgValue::StringArray(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(scalar_or_list("[front, left, rear]").unwrap(), strings(&["front", "left", "rear"]));
        assert_eq!(scalar_or_list("'[front, left]'").unwrap(), ArgValue::String("[front, left]".into()));
        assert_eq!(scalar_or_list("[1, 2.5]").unwrap(), ArgValue::DoubleArray(vec![1.0, 2.5]));
        assert_eq!(scalar_or_list("[1, 2]").unwrap(), ArgValue::IntegerArray(vec![1, 2]));
        assert_eq!(scalar_or_list("[]").unwrap(), strings(&[]));
        assert_eq!(scalar_or_list("['a, b', c]").unwrap(), strings(&["a, b", "c"]));
        assert!(scalar_or_list("[1, x]").is_err());
        assert!(scalar_or_list("[[1]]").is_err());
    }

    #[test]
    fn sources_come_in_command_line_order() {
        let a = args(&["--foo", "-p", "x:=1", "--ros-args", "-r", "a:=b", "--params-file", "f.yaml", "-p", "cameras:=[a, b]", "--", "-p", "y:=2"]);
        assert_eq!(
            parameter_sources(&a),
            vec![
                Source::File("f.yaml".into()),
                Source::Param { name: "cameras".into(), value: "[a, b]".into() }
            ]
        );
    }

    #[test]
    fn the_last_source_wins_whatever_the_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            "/**:\n  ros__parameters:\n    cameras: \"\"\n    min_range: 0.0\n    output_width: 0\n    rear:\n      max_range: 4.0\nother_node:\n  ros__parameters:\n    device: cuda\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let a = args(&[
            "--ros-args", "--params-file", f, "-p", "cameras:=[front, left, rear]", "-p", "min_range:=1", "-p", "output_width:=320.0",
            "-p", "device:=cpu", "-p", "rear.max_range:=5",
        ]);
        let values = last_values(&parameter_sources(&a), &["clip_depth", "/clip_depth"]).unwrap();
        let get = |n: &str| values.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("cameras"), Some(ArgValue::StringArray(vec!["front".into(), "left".into(), "rear".into()])));
        assert_eq!(get("min_range"), Some(ArgValue::Integer(1)));
        assert_eq!(get("output_width"), Some(ArgValue::Double(320.0)));
        assert_eq!(get("rear.max_range"), Some(ArgValue::Integer(5)));
        assert_eq!(get("device"), None, "set once (the other node's section does not apply)");
        // A file after the command-line value wins in turn.
        let b = args(&["--ros-args", "-p", "cameras:=[front]", "--params-file", f]);
        let values = last_values(&parameter_sources(&b), &["clip_depth"]).unwrap();
        assert_eq!(values.iter().find(|(k, _)| k == "cameras").map(|(_, v)| v.clone()), Some(ArgValue::String(String::new())));
    }
}
