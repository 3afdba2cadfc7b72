//! Training-curves PNG: loss (top panel) and validation macro-F1 (bottom panel) against the
//! optimizer step.
//!
//! Drawn with `plotters` into an in-memory RGB buffer and encoded with `png`, so the file can
//! be written to `<path>.tmp` and renamed into place (plotters' own file backend picks the
//! encoder from the file extension, and would leave a half-written PNG after a crash).
//! Text uses DejaVu Sans embedded in the binary: Docker and CI images often have no fonts.

use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Image size in pixels: wide enough for tens of thousands of steps, tall enough for two panels.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;

/// matplotlib's "tab10" blue, orange and green: distinct, and readable by most colour-blind people.
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VALID_COLOR: RGBColor = RGBColor(255, 127, 14);
const F1_COLOR: RGBColor = RGBColor(44, 160, 44);
const NOTE_COLOR: RGBColor = RGBColor(110, 110, 110);

/// Font family name the plotters text styles below ask for.
const FONT: &str = "sans-serif";

/// What the PNG shows.
pub struct Curves<'a> {
    /// Drawn above both panels, e.g. "minilm: training curves".
    pub title: &'a str,
    /// (step, loss) for every optimizer step.
    pub train_loss: &'a [(u64, f64)],
    /// (step, validation loss); may be empty.
    pub valid_loss: &'a [(u64, f64)],
    /// (step, validation macro-F1 in 0..=1); may be empty.
    pub macro_f1: &'a [(u64, f64)],
}

/// Why no PNG was written. In every case `path` is left as it was and no `<path>.tmp` remains.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Every series is empty (or holds only NaN/infinite values).
    #[error("nothing to plot: no finite training loss, validation loss or macro-F1 values")]
    Empty,
    /// The embedded DejaVu Sans could not be registered with plotters (a build problem).
    #[error("cannot register the embedded DejaVu Sans font with plotters")]
    Font,
    /// plotters failed (or panicked) while drawing.
    #[error("cannot draw the training curves for {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    /// The drawn image could not be PNG-encoded.
    #[error("cannot encode the training curves PNG for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: png::EncodingError,
    },
    /// Writing `<path>.tmp` or renaming it to `path` failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write a PNG (1000x700) at `path`: two panels stacked, top loss vs step (training loss
/// line, validation loss as points+line if any), bottom validation macro-F1 vs step (0..1 y
/// axis, points+line), with axis labels, legends and the title.
///
/// NaN and infinite values are skipped. Writes `<path>.tmp`, syncs it and renames it to
/// `path`, so a crash never leaves a half-written file at `path`.
pub fn write_curves_png(path: &Path, curves: &Curves) -> Result<(), PlotError> {
    let data = Cleaned::new(curves).ok_or(PlotError::Empty)?;
    register_embedded_font()?;

    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    // plotters has internal unwrap()s; a chart is a by-product of training, so a bug there
    // must come back as an error rather than abort a finished training run.
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        draw(&mut rgb, curves.title, &data)
    }));
    let drawn = match drawn {
        Ok(result) => result,
        Err(panic) => Err(panic_message(panic.as_ref())),
    };
    drawn.map_err(|message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    })?;

    let png = encode_png(&rgb).map_err(|source| PlotError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomically(path, &png)
}

/// The curves with non-finite values dropped, sorted by step, and the shared x range.
struct Cleaned {
    train: Vec<(u64, f64)>,
    valid: Vec<(u64, f64)>,
    f1: Vec<(u64, f64)>,
    /// Same for both panels so their steps line up vertically.
    steps: Range<u64>,
}

impl Cleaned {
    /// `None` when there is nothing finite to draw.
    fn new(curves: &Curves) -> Option<Self> {
        let train = finite_sorted(curves.train_loss);
        let valid = finite_sorted(curves.valid_loss);
        // Clamped so a rounding error such as 1.0000001 cannot draw outside the 0..1 panel.
        let f1: Vec<_> = finite_sorted(curves.macro_f1)
            .into_iter()
            .map(|(step, f1)| (step, f1.clamp(0.0, 1.0)))
            .collect();
        let all_steps = || train.iter().chain(&valid).chain(&f1).map(|&(step, _)| step);
        let first = all_steps().min()?;
        let last = all_steps().max()?;
        // A single step still needs a non-empty axis.
        let end = if last > first {
            last
        } else {
            first.saturating_add(1)
        };
        let steps = if end > first {
            first..end
        } else {
            first - 1..first
        };
        Some(Self {
            train,
            valid,
            f1,
            steps,
        })
    }
}

fn finite_sorted(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let mut kept: Vec<_> = points
        .iter()
        .copied()
        .filter(|(_, value)| value.is_finite())
        .collect();
    // Stable, so repeated steps (e.g. a resumed run) keep their recorded order.
    kept.sort_by_key(|&(step, _)| step);
    kept
}

/// Registers DejaVu Sans as plotters' "sans-serif" once per process: plotters' `ab_glyph`
/// text backend has no fonts of its own and never looks at the system's.
pub(crate) fn register_embedded_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Draws both panels into `rgb` (WIDTH x HEIGHT, 3 bytes a pixel).
fn draw(rgb: &mut [u8], title: &str, data: &Cleaned) -> Result<(), String> {
    let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(rgb, (WIDTH, HEIGHT))
        .map_err(to_string)?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(to_string)?;
    let body = root
        .titled(title, (FONT, 26).into_font().color(&BLACK))
        .map_err(to_string)?;
    let (_, body_height) = body.dim_in_pixel();
    let (top, bottom) = body.split_vertically(body_height * 11 / 20);

    if data.train.is_empty() && data.valid.is_empty() {
        draw_note(&top, "no loss values")?;
    } else {
        draw_loss(&top, data)?;
    }
    if data.f1.is_empty() {
        draw_note(&bottom, "no validation set")?;
    } else {
        draw_f1(&bottom, data)?;
    }
    root.present().map_err(to_string)
}

fn draw_loss(area: &DrawingArea<BitMapBackend<'_>, Shift>, data: &Cleaned) -> Result<(), String> {
    let losses = data.train.iter().chain(&data.valid).map(|&(_, loss)| loss);
    let (low, high) = padded_range(losses);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(data.steps.clone(), low..high)
        .map_err(to_string)?;
    let decimals = decimals_for(high - low);
    let y_label = move |v: &f64| format!("{v:.decimals$}");
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_labels(10)
        .y_labels(8)
        .y_label_formatter(&y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(to_string)?;

    if !data.train.is_empty() {
        let style = TRAIN_COLOR.stroke_width(2);
        chart
            .draw_series(LineSeries::new(data.train.iter().copied(), style))
            .map_err(to_string)?
            .label("training loss")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        // A line through one point is invisible.
        if data.train.len() == 1 {
            chart
                .draw_series(markers(&data.train, TRAIN_COLOR))
                .map_err(to_string)?;
        }
    }
    if !data.valid.is_empty() {
        let style = VALID_COLOR.stroke_width(2);
        chart
            .draw_series(LineSeries::new(data.valid.iter().copied(), style))
            .map_err(to_string)?;
        chart
            .draw_series(markers(&data.valid, VALID_COLOR))
            .map_err(to_string)?
            .label("validation loss")
            // Legend sample for points+line: a short line with a dot on it.
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (20, 0)], style)
                    + Circle::new((10, 0), 4, VALID_COLOR.filled())
            });
    }
    // Loss falls from the upper left, so the upper right is usually free.
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn draw_f1(area: &DrawingArea<BitMapBackend<'_>, Shift>, data: &Cleaned) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(data.steps.clone(), 0.0..1.0)
        .map_err(to_string)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("validation macro-F1")
        .x_labels(10)
        .y_labels(6)
        .y_label_formatter(&|v: &f64| format!("{v:.1}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(to_string)?;
    let style = F1_COLOR.stroke_width(2);
    chart
        .draw_series(LineSeries::new(data.f1.iter().copied(), style))
        .map_err(to_string)?;
    chart
        .draw_series(markers(&data.f1, F1_COLOR))
        .map_err(to_string)?
        .label("validation macro-F1")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (20, 0)], style)
                + Circle::new((10, 0), 4, F1_COLOR.filled())
        });
    // F1 rises towards the upper right, so the lower right is usually free.
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// Filled dots for evaluation points, which are few and far apart.
fn markers(
    points: &[(u64, f64)],
    color: RGBColor,
) -> impl Iterator<Item = Circle<(u64, f64), i32>> + '_ {
    points
        .iter()
        .map(move |&point| Circle::new(point, 4, color.filled()))
}

fn draw_legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(to_string)
}

/// Grey text in the middle of a panel that has no data, so the reader sees why it is empty.
fn draw_note(area: &DrawingArea<BitMapBackend<'_>, Shift>, text: &str) -> Result<(), String> {
    let (width, height) = area.dim_in_pixel();
    let style = (FONT, 22)
        .into_font()
        .color(&NOTE_COLOR)
        .pos(Pos::new(HPos::Center, VPos::Center));
    let center = (width as i32 / 2, height as i32 / 2);
    area.draw_text(text, &style, center).map_err(to_string)
}

/// y range covering every value with 5% headroom; never empty, never below 0 for losses
/// that are all non-negative, and never wider than f64 can measure.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(min.is_finite() && max.is_finite()) {
        return (0.0, 1.0);
    }
    // Halves, so that the span of values near ±f64::MAX cannot overflow.
    let mid = min / 2.0 + max / 2.0;
    let half = max / 2.0 - min / 2.0;
    let half = if half > 0.0 {
        half * 1.05
    } else {
        // A single value (or a constant loss): show it mid-panel.
        (mid.abs() * 0.1).max(0.05)
    };
    // plotters loops forever computing ticks when the span (high - low) is infinite.
    let mut low = (mid - half).max(-f64::MAX / 2.0);
    let high = (mid + half).min(f64::MAX / 2.0);
    if min >= 0.0 && low < 0.0 {
        low = 0.0;
    }
    (low, high)
}

/// Enough decimals on the y labels to tell neighbouring ticks apart, and no more.
fn decimals_for(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    (2.0 - span.log10().floor()).clamp(0.0, 8.0) as usize
}

fn to_string(error: impl Display) -> String {
    error.to_string()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("plotters panicked: {detail}")
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Writes `bytes` to `<path>.tmp`, syncs it and renames it over `path`; on failure the
/// temporary file is removed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlotError::Io { path, source }
    };
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(io_error(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_error(path)));
    if written.is_err() {
        // Best effort: the write error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Decodes a PNG written by `write_curves_png` into (width, height, RGB bytes).
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let file = std::fs::File::open(path).expect("open png");
        let mut reader = png::Decoder::new(file).read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixels(rgb: &[u8]) -> impl Iterator<Item = [u8; 3]> + '_ {
        rgb.chunks_exact(3).map(|p| [p[0], p[1], p[2]])
    }

    fn count_color(rgb: &[u8], color: RGBColor) -> usize {
        let RGBColor(r, g, b) = color;
        pixels(rgb).filter(|&p| p == [r, g, b]).count()
    }

    type Series = Vec<(u64, f64)>;

    /// A plausible fine-tuning run: 600 noisy decreasing steps, evaluation every 100 steps.
    fn realistic() -> (Series, Series, Series) {
        let train = (1..=600u64)
            .map(|s| {
                let noise = ((s * 7919) % 13) as f64 / 13.0 * 0.15;
                (s, 2.2 * (-(s as f64) / 150.0).exp() + 0.1 + noise)
            })
            .collect();
        let valid = (1..=6u64)
            .map(|e| (e * 100, 1.6 * (-(e as f64) / 2.0).exp() + 0.3))
            .collect();
        let f1 = (1..=6u64)
            .map(|e| (e * 100, 0.9 - 0.6 * (-(e as f64) / 1.5).exp()))
            .collect();
        (train, valid, f1)
    }

    #[test]
    fn plot_writes_png_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let (train, valid, f1) = realistic();
        let curves = Curves {
            title: "minilm: training curves",
            train_loss: &train,
            valid_loss: &valid,
            macro_f1: &f1,
        };
        write_curves_png(&path, &curves).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), WIDTH);
        assert_eq!(
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
            HEIGHT
        );
        // A blank 1000x700 image compresses to a few kilobytes.
        assert!(bytes.len() > 20_000, "only {} bytes", bytes.len());
        assert!(!dir.path().join("curves.png.tmp").exists());

        let (width, height, rgb) = decode(&path);
        assert_eq!((width, height), (WIDTH, HEIGHT));
        let distinct: HashSet<_> = pixels(&rgb).collect();
        // Anti-aliased text and lines give many shades, not just a handful of flat colours.
        assert!(distinct.len() > 50, "only {} colours", distinct.len());
        for (name, color) in [
            ("training", TRAIN_COLOR),
            ("validation", VALID_COLOR),
            ("F1", F1_COLOR),
        ] {
            let n = count_color(&rgb, color);
            assert!(n > 200, "{name} colour drawn on only {n} pixels");
        }
        // Training loss is only in the top panel, macro-F1 only in the bottom one.
        let row_of = |color: RGBColor| {
            let RGBColor(r, g, b) = color;
            let rows: Vec<usize> = pixels(&rgb)
                .enumerate()
                .filter(|(_, p)| *p == [r, g, b])
                .map(|(i, _)| i / WIDTH as usize)
                .collect();
            (*rows.iter().min().unwrap(), *rows.iter().max().unwrap())
        };
        let (_, train_bottom) = row_of(TRAIN_COLOR);
        let (f1_top, _) = row_of(F1_COLOR);
        assert!(train_bottom < f1_top, "{train_bottom} vs {f1_top}");
    }

    #[test]
    fn plot_replaces_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        std::fs::write(&path, b"old").unwrap();
        let curves = Curves {
            title: "t",
            train_loss: &[(1, 1.0), (2, 0.5)],
            valid_loss: &[],
            macro_f1: &[],
        };
        write_curves_png(&path, &curves).unwrap();
        assert_eq!(decode(&path).0, WIDTH);
    }

    #[test]
    fn plot_empty_is_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let empty = Curves {
            title: "empty",
            train_loss: &[],
            valid_loss: &[],
            macro_f1: &[],
        };
        assert!(matches!(
            write_curves_png(&path, &empty),
            Err(PlotError::Empty)
        ));
        // Only non-finite values is as empty as no values.
        let nan_only = Curves {
            title: "nan",
            train_loss: &[(1, f64::NAN), (2, f64::INFINITY)],
            valid_loss: &[(2, f64::NEG_INFINITY)],
            macro_f1: &[(2, f64::NAN)],
        };
        assert!(matches!(
            write_curves_png(&path, &nan_only),
            Err(PlotError::Empty)
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn plot_single_point_works() {
        let dir = tempfile::tempdir().unwrap();
        for (name, step) in [("zero.png", 0), ("max.png", u64::MAX), ("mid.png", 42)] {
            let path = dir.path().join(name);
            let curves = Curves {
                title: "one step",
                train_loss: &[(step, 0.7)],
                valid_loss: &[],
                macro_f1: &[],
            };
            write_curves_png(&path, &curves).unwrap();
            let (width, height, rgb) = decode(&path);
            assert_eq!((width, height), (WIDTH, HEIGHT));
            assert!(count_color(&rgb, TRAIN_COLOR) > 10, "{name}: no marker");
        }
        // One evaluation only: F1 panel alone, no loss at all.
        let path = dir.path().join("f1.png");
        let curves = Curves {
            title: "one eval",
            train_loss: &[],
            valid_loss: &[],
            macro_f1: &[(10, 0.5)],
        };
        write_curves_png(&path, &curves).unwrap();
        assert!(count_color(&decode(&path).2, F1_COLOR) > 10);
    }

    #[test]
    fn plot_skips_nan_and_infinite_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let train = [
            (1, 2.0),
            (2, f64::NAN),
            (3, 1.5),
            (4, f64::INFINITY),
            (5, 1.0),
            (6, f64::NEG_INFINITY),
            (7, 0.8),
        ];
        let curves = Curves {
            title: "nan",
            train_loss: &train,
            valid_loss: &[(3, f64::NAN), (7, 1.1)],
            macro_f1: &[(3, f64::NAN), (7, 0.6), (8, 1.0000001)],
        };
        write_curves_png(&path, &curves).unwrap();
        let (_, _, rgb) = decode(&path);
        assert!(count_color(&rgb, TRAIN_COLOR) > 100);
        assert!(count_color(&rgb, VALID_COLOR) > 10);
        assert!(count_color(&rgb, F1_COLOR) > 10);
    }

    #[test]
    fn plot_extreme_values_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let curves = Curves {
            title: "",
            train_loss: &[(0, f64::MAX), (1, -f64::MAX), (u64::MAX, 0.0)],
            valid_loss: &[(5, 1e-300), (5, 1e-300)],
            macro_f1: &[(3, -5.0), (3, 7.0)],
        };
        // Either a PNG or an error, never a panic.
        if write_curves_png(&path, &curves).is_ok() {
            assert_eq!(decode(&path).0, WIDTH);
        }
    }

    #[test]
    fn plot_padded_range_is_finite_and_non_empty() {
        for values in [
            vec![0.7],
            vec![0.0],
            vec![-3.0],
            vec![2.0, 0.1],
            vec![f64::MAX, -f64::MAX],
            vec![1e-300, 1e-300],
        ] {
            let (low, high) = padded_range(values.iter().copied());
            assert!(low < high, "{values:?}: {low}..{high}");
            assert!((high - low).is_finite(), "{values:?}: {low}..{high}");
        }
        assert_eq!(padded_range([2.0, 0.01].into_iter()).0, 0.0);
    }

    #[test]
    fn plot_unwritable_path_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("curves.png");
        let curves = Curves {
            title: "t",
            train_loss: &[(1, 1.0)],
            valid_loss: &[],
            macro_f1: &[],
        };
        let err = write_curves_png(&path, &curves).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err}");
        assert!(err.to_string().contains("curves.png.tmp"), "{err}");
    }
}
