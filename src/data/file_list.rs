//! The authors' file lists: one sample per line, `rgb_path depth_path
//! focal`, paths relative to the data and ground-truth roots (a leading
//! slash is dropped, as theirs drop it). Blank lines are skipped; a line is
//! only parsed when its sample is loaded, so a bad line costs that sample.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    /// 1-based line number in the list file.
    pub line_no: usize,
    pub text: String,
}

/// The parsed fields of a line.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePaths {
    pub rgb: PathBuf,
    pub depth: Option<PathBuf>,
    pub focal: f32,
}

pub fn read_list(path: &Path) -> Result<Vec<ListEntry>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| ListEntry { line_no: i + 1, text: l.trim().to_string() })
        .collect())
}

fn relative(p: &str) -> &str {
    p.strip_prefix('/').or_else(|| p.strip_prefix('\\')).unwrap_or(p)
}

impl ListEntry {
    /// Resolves the line against the roots; `gt_root` `None` means no
    /// ground truth is wanted.
    pub fn paths(&self, data_root: &Path, gt_root: Option<&Path>) -> Result<SamplePaths, String> {
        let mut parts = self.text.split_whitespace();
        let rgb = parts.next().ok_or("empty line")?;
        let depth = parts.next();
        let focal = match parts.next() {
            Some(f) => f.parse::<f32>().map_err(|_| format!("focal {f:?} is not a number"))?,
            None => 0.0,
        };
        Ok(SamplePaths {
            rgb: data_root.join(relative(rgb)),
            depth: match (depth, gt_root) {
                (Some(d), Some(root)) if d != "None" => Some(root.join(relative(d))),
                _ => None,
            },
            focal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_resolve_against_their_roots() {
        let e = ListEntry { line_no: 3, text: "/kitchen/rgb_1.jpg /kitchen/sync_depth_1.png 518.8579".into() };
        let p = e.paths(Path::new("data"), Some(Path::new("gt"))).unwrap();
        assert_eq!(p.rgb, Path::new("data/kitchen/rgb_1.jpg"));
        assert_eq!(p.depth.as_deref(), Some(Path::new("gt/kitchen/sync_depth_1.png")));
        assert_eq!(p.focal, 518.8579);
        let e = ListEntry { line_no: 1, text: "a.png b.png notafocal".into() };
        assert!(e.paths(Path::new("."), None).unwrap_err().contains("focal"));
        let e = ListEntry { line_no: 1, text: "a.png None 1".into() };
        assert_eq!(e.paths(Path::new("."), Some(Path::new("."))).unwrap().depth, None);
    }
}
