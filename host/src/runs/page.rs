//! One self-contained HTML page comparing runs: the table, validation macro-F1 and training
//! loss against the step for every run (SVG drawn by plotters, inline), and each run's
//! confusion matrix. No script, no external file.

use super::collect::{differing_settings, show, RecordedRun, FIGURES};
use plotters::prelude::*;
use serde_json::Value;

/// matplotlib's tab10: distinct, and readable by most colour-blind people.
const PALETTE: [RGBColor; 10] = [
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

/// The page for `runs` of `model`.
pub fn render(model: &str, runs: &[RecordedRun]) -> String {
    let mut html = String::new();
    html.push_str(&format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{0}: training runs</title><style>{STYLE}</style></head><body>\
         <h1>{0}: {1} training runs</h1>\n",
        escape(model),
        runs.len()
    ));
    html.push_str(&table(runs));
    html.push_str("<h2>Validation macro-F1</h2>\n");
    html.push_str(&chart(runs, "evaluations", "macro_f1", "macro-F1"));
    html.push_str("<h2>Training loss</h2>\n");
    html.push_str(&chart(runs, "steps", "loss", "loss"));
    html.push_str("<h2>Confusion matrices (validation, the model kept)</h2>\n<div class=\"grid\">");
    for run in runs {
        html.push_str(&confusion(run));
    }
    html.push_str("</div></body></html>\n");
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:75rem;margin:auto;padding:1rem;color:#1b1f24}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border-bottom:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.grid{display:flex;flex-wrap:wrap;gap:1.5rem}\
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;border-radius:2px}\
.wrap{overflow-x:auto}svg{max-width:100%;height:auto}";

/// The runs, their figures and the settings that differ.
fn table(runs: &[RecordedRun]) -> String {
    let differing = differing_settings(runs);
    let mut out = String::from("<div class=\"wrap\"><table id=\"runs\"><tr><th>run</th>");
    for (name, _) in FIGURES {
        out.push_str(&format!("<th>{}</th>", escape(name)));
    }
    for key in &differing {
        out.push_str(&format!("<th>{}</th>", escape(key)));
    }
    out.push_str("</tr>\n");
    for (i, run) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        out.push_str(&format!(
            "<tr><td><span class=\"swatch\" style=\"background:rgb({},{},{})\"></span>{}</td>",
            color.0,
            color.1,
            color.2,
            escape(&run.name)
        ));
        for (_, pointer) in FIGURES {
            let text = run
                .number(pointer)
                .map_or("-".to_string(), |v| format_figure(pointer, v));
            out.push_str(&format!("<td class=\"n\">{text}</td>"));
        }
        let settings = run.settings();
        for key in &differing {
            out.push_str(&format!("<td>{}</td>", escape(&show(settings.get(key)))));
        }
        if let Err(e) = &run.report {
            out.push_str(&format!("<td>{}</td>", escape(e)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
    out
}

fn format_figure(pointer: &str, value: f64) -> String {
    if pointer.ends_with("macro_f1") || pointer.ends_with("accuracy") {
        format!("{value:.4}")
    } else if pointer == "/seconds" {
        format!("{value:.1} s")
    } else {
        format!("{value}")
    }
}

/// One line per run of `history.<list>[].<field>` against the step, as inline SVG; a note
/// instead when no run has the series.
fn chart(runs: &[RecordedRun], list: &str, field: &str, label: &str) -> String {
    let series: Vec<(usize, Vec<(f64, f64)>)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.series(list, field)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if series.is_empty() {
        return format!("<p>No run recorded {}.</p>\n", escape(label));
    }
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (_, points) in &series {
        for (x, y) in points {
            x_max = x_max.max(*x);
            y_min = y_min.min(*y);
            y_max = y_max.max(*y);
        }
    }
    let pad = ((y_max - y_min) * 0.05).max(0.01);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), String> {
        crate::training::plot::register_embedded_font().map_err(|e| e.to_string())?;
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, points) in &series {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())
    })();
    match drawn {
        Ok(()) => format!("<div class=\"wrap\">{svg}</div>\n"),
        Err(e) => format!("<p>Cannot draw the {}: {}</p>\n", escape(label), escape(&e)),
    }
}

/// A run's confusion matrix (rows gold, columns predicted), or nothing without one.
fn confusion(run: &RecordedRun) -> String {
    let Some(valid) = run.report.as_ref().ok().and_then(|r| r.get("valid")) else {
        return String::new();
    };
    let labels: Vec<String> = valid
        .get("per_label")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|x| x["label"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    let Some(matrix) = valid.get("confusion").and_then(Value::as_array) else {
        return String::new();
    };
    let mut out = format!(
        "<table class=\"confusion\"><caption>{}</caption><tr><th>gold \\ predicted</th>",
        escape(&run.name)
    );
    for label in &labels {
        out.push_str(&format!("<th>{}</th>", escape(label)));
    }
    out.push_str("</tr>");
    let total: f64 = matrix
        .iter()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .filter_map(Value::as_f64)
        .sum::<f64>()
        .max(1.0);
    for (g, row) in matrix.iter().enumerate() {
        let name = labels.get(g).map_or("?", String::as_str);
        out.push_str(&format!("<tr><th>{}</th>", escape(name)));
        for (p, count) in row.as_array().into_iter().flatten().enumerate() {
            let n = count.as_f64().unwrap_or(0.0);
            // Shade by share of all pairs: green on the diagonal, red off it.
            let alpha = (n / total * 3.0).min(1.0);
            let rgb = if g == p { "44,160,44" } else { "214,39,40" };
            out.push_str(&format!(
                "<td class=\"n\" style=\"background:rgba({rgb},{alpha:.2})\">{n}</td>"
            ));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn run(name: &str, f1: &[f64], c: f64) -> RecordedRun {
        let evaluations: Vec<Value> = f1
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"step": (i + 1) * 10, "macro_f1": f}))
            .collect();
        RecordedRun {
            name: name.into(),
            dir: PathBuf::from(name),
            report: Ok(json!({
                "entry": {"model_config": {"options": {"c": c}}},
                "valid": {"macro_f1": f1.last(), "accuracy": 0.5, "confusion": [[3, 1], [0, 2]],
                          "per_label": [{"label": "a<b"}, {"label": "c"}]},
                "history": {"evaluations": evaluations,
                            "steps": [{"step": 1, "loss": 1.0}, {"step": 20, "loss": 0.5}]},
            })),
        }
    }

    #[test]
    fn the_page_holds_the_table_both_charts_and_a_matrix_per_run() {
        let runs = [run("r1", &[0.3, 0.5], 1.0), run("r2", &[0.4, 0.6], 10.0)];
        let html = render("m<x>", &runs);
        assert!(html.contains("<title>m&lt;x&gt;: training runs</title>"));
        assert_eq!(html.matches("<svg").count(), 2, "two charts");
        assert_eq!(html.matches("class=\"confusion\"").count(), 2);
        assert!(
            html.contains("<th>model_config.options.c</th>"),
            "the differing setting"
        );
        assert!(html.contains("0.6000"), "r2's macro-F1");
        assert!(html.contains("a&lt;b"), "labels escaped");
        assert!(!html.contains("<script"), "no script");
        // One polyline per run in each chart.
        assert!(
            html.matches("<polyline").count() >= 4,
            "{}",
            html.matches("<polyline").count()
        );
    }
}
