//! Printing evaluation results as tables.

use clarity_sdk::metrics::Evaluation;

/// Accuracy, macro-F1, a per-label table and the confusion matrix, with a baseline to
/// compare against.
pub fn print_evaluation(title: &str, eval: &Evaluation, baseline: Option<&Evaluation>) {
    println!("{title}: {} pairs", eval.total);
    match baseline {
        Some(b) => {
            println!(
                "  accuracy  {:.4}   (majority baseline {:.4})",
                eval.accuracy, b.accuracy
            );
            println!(
                "  macro-F1  {:.4}   (majority baseline {:.4})",
                eval.macro_f1, b.macro_f1
            );
        }
        None => {
            println!("  accuracy  {:.4}", eval.accuracy);
            println!("  macro-F1  {:.4}", eval.macro_f1);
        }
    }
    let width = eval
        .per_label
        .iter()
        .map(|l| l.label.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    println!();
    println!("  {:<width$}  precision  recall     f1  support", "label");
    for l in &eval.per_label {
        println!(
            "  {:<width$}  {:>9.4}  {:>6.4}  {:>5.4}  {:>7}",
            l.label, l.precision, l.recall, l.f1, l.support
        );
    }
    println!();
    println!("  confusion matrix (rows: gold, columns: predicted)");
    let col = width.max(8);
    print!("  {:<width$}", "");
    for l in &eval.per_label {
        print!("  {:>col$}", truncate(&l.label, col));
    }
    println!();
    for (l, row) in eval.per_label.iter().zip(&eval.confusion) {
        print!("  {:<width$}", l.label);
        for count in row {
            print!("  {count:>col$}");
        }
        println!();
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
