//! The run's record: `metrics.jsonl` (one JSON object per logged training
//! step and per validation) and `curves.png`, the training loss and the
//! validation AbsRel and d1 against steps.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};

pub struct MetricsLog {
    path: PathBuf,
    records: Vec<Value>,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, keeping earlier records when resuming at
    /// `resume_at_step` (later ones are dropped: they will be redone).
    pub fn open(dir: &Path, resume_at_step: Option<u64>) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut records = Vec::new();
        if let Some(step) = resume_at_step {
            if let Ok(text) = std::fs::read_to_string(&path) {
                records = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|r| r.get("step").and_then(Value::as_u64).is_some_and(|s| s <= step))
                    .collect();
            }
        }
        let log = Self { path, records };
        log.rewrite()?;
        Ok(log)
    }

    /// A log not yet read or written (replaced when the run is resumed).
    pub fn empty(dir: &Path) -> Self {
        Self { path: dir.join("metrics.jsonl"), records: Vec::new() }
    }

    fn rewrite(&self) -> Result<()> {
        let text: String = self.records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&self.path, text).map_err(|source| Error::Io { path: self.path.clone(), source })
    }

    pub fn append(&mut self, record: Value) -> Result<()> {
        let io = |source| Error::Io { path: self.path.clone(), source };
        let mut f = OpenOptions::new().append(true).create(true).open(&self.path).map_err(io)?;
        writeln!(f, "{record}").map_err(io)?;
        self.records.push(record);
        Ok(())
    }

    pub fn records(&self) -> &[Value] {
        &self.records
    }
}

fn series(records: &[Value], kind: &str, key: &str, source: Option<&str>) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter(|r| source.is_none_or(|s| r.get("source").and_then(Value::as_str) == Some(s)))
        .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn bounds(lines: &[&[(f64, f64)]]) -> Option<((f64, f64), (f64, f64))> {
    let pts = lines.iter().flat_map(|l| l.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return None;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    Some(((x0, x1.max(x0 + 1.0)), (y0 - pad, y1 + pad)))
}

const COLOURS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> std::result::Result<(), String> {
    let refs: Vec<&[(f64, f64)]> = lines.iter().map(|(_, l)| l.as_slice()).collect();
    let Some(((x0, x1), (y0, y1))) = bounds(&refs) else {
        area.titled(&format!("{title}: no data yet"), ("sans-serif", 16)).map_err(|e| e.to_string())?;
        return Ok(());
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("optimiser step").draw().map_err(|e| e.to_string())?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        if pts.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(pts[0], 3, colour.filled()))).map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A font bundled with a crate, so no system font is needed.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

/// Draws the loss and validation curves of `records` into `path`.
pub fn draw_curves(records: &[Value], path: &Path) -> Result<()> {
    register_font();
    let fail = |message: String| Error::Io { path: path.to_owned(), source: std::io::Error::other(message) };
    let tmp = path.with_extension("partial.png");
    {
        let root = BitMapBackend::new(&tmp, (1200, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let (left, right) = root.split_horizontally(600);
        let losses = vec![
            ("total", series(records, "train", "loss", None)),
            ("SILog", series(records, "train", "silog", None)),
            ("SSIM", series(records, "train", "ssim", None)),
        ];
        panel(&left, "training loss", &losses).map_err(fail)?;
        let val = vec![
            ("AbsRel", series(records, "val", "abs_rel", Some("selected"))),
            ("d1 (delta < 1.25)", series(records, "val", "a1", Some("selected"))),
        ];
        panel(&right, "validation", &val).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_owned(), source })
}
