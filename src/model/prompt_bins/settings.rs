//! The settings every prompt family's config has (prompts, bins,
//! temperature, input, crop, depth range): their defaults, their checks,
//! the sentences they make, and the node's overrides of them. Each family
//! keeps its own keys and defaults in its config and lends them here as
//! [`PromptSettings`].

use super::PromptOverrides;
/// ImageNet's statistics: the release normalises with them, not CLIP's.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A prompt family's shared settings, borrowed from its config.
#[derive(Debug, Clone, Copy)]
pub struct PromptSettings<'a> {
    pub depth_templates: &'a [String],
    pub obj_classes: &'a [String],
    pub depth_classes: &'a [String],
    pub bin_list: &'a [f64],
    pub depth_scale: f64,
    pub temperature: f64,
    /// (width, height) of the model's input.
    pub input: (usize, usize),
    pub crop: Option<[usize; 4]>,
    pub crop_frame: [usize; 2],
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub min_depth: Option<f64>,
    pub max_depth: Option<f64>,
}

impl PromptSettings<'_> {
    /// Checks everything that does not depend on the weights; each message
    /// names its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.depth_templates.is_empty() {
            return Err("depth_templates is empty: give at least one sentence template".into());
        }
        for (i, t) in self.depth_templates.iter().enumerate() {
            if t.matches("{}").count() != 2 || t.replace("{}", "").contains(['{', '}']) {
                return Err(format!(
                    "depth_templates[{i}] {t:?} must contain exactly two {{}} (the object, then the distance) and no other braces"
                ));
            }
        }
        check_words("obj_classes", self.obj_classes, 1)?;
        check_words("depth_classes", self.depth_classes, 2)?;
        if self.bin_list.len() != self.depth_classes.len() {
            return Err(format!(
                "bin_list has {} depths but depth_classes has {} classes: give one bin per class",
                self.bin_list.len(),
                self.depth_classes.len()
            ));
        }
        if let Some((i, b)) = self.bin_list.iter().enumerate().find(|(_, b)| !(b.is_finite() && **b > 0.0)) {
            return Err(format!("bin_list[{i}] = {b} is not a positive depth in metres"));
        }
        for (key, v) in [("depth_scale", self.depth_scale), ("temperature", self.temperature)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key} must be a positive number, got {v}"));
            }
        }
        let (w, h) = self.input;
        if h == 0 || w == 0 || h > 8192 || w > 8192 {
            return Err(format!("input_height x input_width {h}x{w} must be in 1..=8192"));
        }
        if let Some([l, t, r, b]) = self.crop {
            if l >= r || t >= b {
                return Err(format!("crop [{l}, {t}, {r}, {b}] is empty: it is [left, top, right, bottom] with left < right, top < bottom"));
            }
            let [fw, fh] = self.crop_frame;
            if r > fw || b > fh {
                return Err(format!("crop [{l}, {t}, {r}, {b}] reaches past its {fw}x{fh} crop_frame"));
            }
        }
        if let Some((c, s)) = self.image_std.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("image_std[{c}] = {s} must be positive"));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err("image_mean must be finite".into());
        }
        let (lo, hi) = clamp_range(&self.bins(), self.min_depth, self.max_depth);
        if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo < hi) {
            return Err(format!("min_depth {lo} / max_depth {hi} must satisfy 0 <= min_depth < max_depth"));
        }
        Ok(())
    }

    /// The bins in metres (`bin_list` x `depth_scale`).
    pub fn bins(&self) -> Vec<f64> {
        self.bin_list.iter().map(|b| b * self.depth_scale).collect()
    }

    /// Per distance class, every template x object sentence.
    pub fn prompts(&self) -> Vec<Vec<String>> {
        self.depth_classes
            .iter()
            .map(|class| self.depth_templates.iter().flat_map(|t| self.obj_classes.iter().map(move |o| fill(t, o, class))).collect())
            .collect()
    }
}

impl PromptOverrides {
    /// Puts the overrides that are set into a config's fields.
    pub fn apply(
        &self,
        (templates, objects, classes): (&mut Vec<String>, &mut Vec<String>, &mut Vec<String>),
        bins: &mut Vec<f64>,
        depth_scale: &mut f64,
        temperature: &mut f64,
    ) {
        let o = self.clone();
        *templates = o.depth_templates.unwrap_or(std::mem::take(templates));
        *objects = o.obj_classes.unwrap_or(std::mem::take(objects));
        *classes = o.depth_classes.unwrap_or(std::mem::take(classes));
        *bins = o.bin_list.unwrap_or(std::mem::take(bins));
        *depth_scale = o.depth_scale.unwrap_or(*depth_scale);
        *temperature = o.temperature.unwrap_or(*temperature);
    }
}

/// The clamp range of a bin-weighted depth: `min_depth`/`max_depth` where
/// given, else the bins' smallest and largest (shared by the prompt families).
pub fn clamp_range(bins: &[f64], min_depth: Option<f64>, max_depth: Option<f64>) -> (f64, f64) {
    let lo = bins.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = bins.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = (min_depth.unwrap_or(lo), max_depth.unwrap_or(hi));
    // One bin value for all classes still makes a (degenerate) range.
    if min_depth.is_none() && max_depth.is_none() && lo == hi {
        return (lo * 0.5, hi * 1.5);
    }
    (lo, hi)
}

/// `template.format(object, distance)` for a template with two `{}`.
fn fill(template: &str, object: &str, distance: &str) -> String {
    let mut parts = template.splitn(3, "{}");
    let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    format!("{a}{object}{b}{distance}{c}")
}

fn check_words(key: &str, words: &[String], at_least: usize) -> std::result::Result<(), String> {
    if words.len() < at_least {
        return Err(format!("{key} has {} entries, it needs at least {at_least}", words.len()));
    }
    if let Some(i) = words.iter().position(|w| w.trim().is_empty()) {
        return Err(format!("{key}[{i}] is empty"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(w) = words.iter().find(|w| !seen.insert(w.as_str())) {
        return Err(format!("{key} lists {w:?} twice"));
    }
    Ok(())
}

// The prompt families' shared defaults (serde `default = ...`).

pub fn default_templates() -> Vec<String> {
    vec!["This {} is {}".into()]
}
pub fn default_objects() -> Vec<String> {
    vec!["object".into()]
}
pub fn default_classes() -> Vec<String> {
    ["giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"]
        .map(String::from)
        .to_vec()
}
pub fn one() -> f64 {
    1.0
}
pub fn yes() -> bool {
    true
}
pub fn default_temperature() -> f64 {
    0.1
}
pub fn default_mean() -> [f32; 3] {
    IMAGENET_MEAN
}
pub fn default_std() -> [f32; 3] {
    IMAGENET_STD
}
/// NYU Depth v2's frames, for which the release's crop is given.
pub fn default_crop_frame() -> [usize; 2] {
    [640, 480]
}
