//! The frontier plot: provider calls per order against detection lag, one point per policy.
//! Drawn by plotters into a PNG; text is rendered by ab_glyph from a TrueType file read at run
//! time, so no system font library is needed to build or run it.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans where Debian puts it (`fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FAMILY: &str = "economy-sans";

/// One policy's point.
#[derive(Debug, Clone)]
pub struct Point {
    /// Label.
    pub name: String,
    /// Calls per order.
    pub calls: f64,
    /// Mean lag, s.
    pub mean: f64,
    /// p90 lag, s.
    pub p90: f64,
}

/// Draws the frontier to `out` (PNG, 1200×600: mean lag on the left, p90 on the right).
pub fn frontier(points: &[Point], font: &Path, out: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(font)
        .map_err(|e| anyhow::anyhow!("font {}: {e} (pass --font)", font.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("font {} is not a TrueType font", font.display()))?;
    let root = BitMapBackend::new(out, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let calls_max = points.iter().map(|p| p.calls).fold(1.0, f64::max) * 2.0;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    for (area, title, lag) in [
        (
            &left,
            "mean detection lag",
            (|p: &Point| p.mean) as fn(&Point) -> f64,
        ),
        (&right, "p90 detection lag", |p: &Point| p.p90),
    ] {
        let lag_max = points.iter().map(lag).fold(1.0, f64::max) * 2.0;
        let lag_min = points
            .iter()
            .map(lag)
            .fold(f64::INFINITY, f64::min)
            .clamp(0.01, 1.0)
            / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("calls per order vs {title}"), (FAMILY, 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.5..calls_max).log_scale(), (lag_min..lag_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("provider calls per order (log)")
            .y_desc("seconds (log)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .draw()?;
        for (i, p) in points.iter().enumerate() {
            let color = colors[i % colors.len()];
            let at = (p.calls.max(0.5), lag(p).max(lag_min));
            chart
                .draw_series(std::iter::once(Circle::new(at, 6, color.filled())))?
                .label(p.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
