//! The library's modules form layers (src/lib.rs, docs/architecture.md):
//! each may use the layers below it and its own, never one above. This
//! reads every source file of each top-level module and checks its
//! `crate::` paths against that order, so that a new import that looks up
//! fails here rather than in a review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level module -> its layer; the order of src/lib.rs's doc comment.
const LAYERS: &[(&str, u32)] = &[
    ("error", 1),
    ("rng", 1),
    ("progress", 1),
    ("config_text", 1),
    ("device", 1),
    ("kernels", 2),
    ("image", 3),
    ("geometry", 3),
    ("weights", 4),
    ("model", 5),
    ("data", 6),
    ("eval", 7),
    ("train", 8),
    ("estimator", 9),
    ("node", 10),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::X`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        // `crate::{a, b}` groups: read every name in the braces.
        if name.is_empty() && after.starts_with('{') {
            let end = after.find('}').unwrap_or(after.len());
            for part in after[1..end].split(',') {
                let n: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !n.is_empty() {
                    found.push(n);
                }
            }
        } else if !name.is_empty() {
            found.push(name);
        }
        rest = after;
    }
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = BTreeMap::new();
    let mut checked = 0;
    for (module, own) in LAYERS {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        assert!(!files.is_empty(), "module {module} has no source in src/");
        for path in files {
            // Comments may point anywhere (a doc link up is no dependency).
            let text = code_of(&path);
            checked += 1;
            for used in crate_paths(&text) {
                if let Some(l) = layer(&used) {
                    if l > *own {
                        violations
                            .entry(path.strip_prefix(&src).unwrap().display().to_string())
                            .or_insert_with(Vec::new)
                            .push(format!("{module} (layer {own}) uses {used} (layer {l})"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "read only {checked} files");
    assert!(violations.is_empty(), "imports that look up: {violations:#?}");
}

/// Source text without comments.
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// Inside `model`: a family folder uses the shared parts, never another
/// family, and the shared parts use no family; the registry
/// (`model/family.rs`) is the one place that names them all.
#[test]
fn model_families_stand_alone() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let families = ["spaceclip", "depthclip", "depthblip2"];
    let mut problems = Vec::new();
    let mut files = Vec::new();
    rust_files(&model, &mut files);
    for path in &files {
        let rel = path.strip_prefix(&model).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "family.rs" || rel == "mod.rs" {
            continue;
        }
        let own = families.iter().find(|f| rel.starts_with(&format!("{f}/")));
        let code = code_of(path);
        for other in families.iter().filter(|f| Some(*f) != own) {
            for pattern in [format!("model::{other}"), format!("super::{other}"), format!("super::super::{other}")] {
                if code.contains(&pattern) {
                    problems.push(format!("model/{rel} uses {pattern}"));
                }
            }
        }
    }
    assert!(files.len() > 20, "read only {} files", files.len());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')) {
            assert!(layer(name).is_some(), "src/lib.rs declares {name}, which has no layer here");
        }
    }
}

#[test]
fn the_reader_sees_grouped_and_nested_paths() {
    let found = crate_paths("use crate::{model::x, data};\nlet a = crate::train::run();");
    assert_eq!(found, ["model", "data", "train"]);
}
