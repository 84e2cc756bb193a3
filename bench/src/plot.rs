//! PNG plots for BENCHMARKS.md: bar charts (median with a min–max whisker) and latency CDFs.
//!
//! Drawn with `plotters`' bitmap backend; text is rendered by `ab_glyph` from a TrueType font
//! read at run time (Debian's `fonts-dejavu-core` by default), so nothing links to system font
//! libraries.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The font used when `--font` is not given (Debian: fonts-dejavu-core).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 520);

/// Loads the font once per process; later calls with another path keep the first.
pub fn use_font(path: &Path) -> anyhow::Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read the plot font {} ({e}); Debian: apt-get install fonts-dejavu-core, or pass --font",
                    path.display()
                )
            })?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// One bar: label, median, min, max.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Under the bar.
    pub label: String,
    /// Its height.
    pub median: f64,
    /// Whisker bottom.
    pub min: f64,
    /// Whisker top.
    pub max: f64,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A bar chart with min–max whiskers.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[Bar]) -> anyhow::Result<()> {
    let top = bars.iter().map(|b| b.max.max(b.median)).fold(0.0, f64::max) * 1.15;
    let top = if top > 0.0 { top } else { 1.0 };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(draw)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .label_style((FAMILY, 16))
        .draw()
        .map_err(draw)?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, b.median)],
                color.filled(),
            )))
            .map_err(draw)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, b.min), (x, b.max)],
                BLACK.stroke_width(2),
            )))
            .map_err(draw)?;
        for y in [b.min, b.max] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.08, y), (x + 0.08, y)],
                    BLACK.stroke_width(2),
                )))
                .map_err(draw)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                format_value(b.median),
                (x - 0.12, b.max.max(b.median) + top * 0.02),
                (FAMILY, 16),
            )))
            .map_err(draw)?;
    }
    root.present().map_err(draw)?;
    Ok(())
}

/// Cumulative distributions of samples (sorted ascending), one line per series.
pub fn cdf(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let right = series
        .iter()
        .filter_map(|(_, s)| s.last().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.05;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..right, 0f64..100f64)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("% of samples at or below")
        .label_style((FAMILY, 16))
        .draw()
        .map_err(draw)?;
    for (i, (name, samples)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = samples.len().max(1) as f64;
        let points = samples
            .iter()
            .enumerate()
            .map(|(k, v)| (*v, (k + 1) as f64 * 100.0 / n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(draw)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 16))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

/// Lines through points (x ascending), one per series, each point marked and labelled.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (right, top) = points.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let right = if right > 0.0 { right * 1.1 } else { 1.0 };
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-right * 0.05..right, 0f64..top)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FAMILY, 16))
        .draw()
        .map_err(draw)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(draw)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(draw)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Text::new(format_value(y), (x, y + top * 0.02), (FAMILY, 16))),
            )
            .map_err(draw)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn draw<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// Writes `plot` to `dir/name`, creating `dir`.
pub fn into(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(name))
}
