//! `model_config.options.onnx_ops` end to end: `fused` writes the graph in ONNX Runtime's
//! contrib ops (`Attention`, `SkipLayerNormalization`, `BiasGelu`; `QAttention` once
//! quantized), which serves the same probabilities as the default standard-operator graph
//! of the same trained weights; a wrong value is a config error naming the option.

use clarity_tests::encoder::{write_tiny_encoder, write_tiny_encoder_entry};
use clarity_tests::Project;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn write_yaml(project: &Project, onnx_ops: &str) {
    write_tiny_encoder_entry(project, &format!("options: {{onnx_ops: {onnx_ops}}}"));
}

/// The operator types in an ONNX file, found as the strings protobuf stores them under.
fn has_op(path: &Path, op: &str) -> bool {
    let bytes = std::fs::read(path).expect("read the graph");
    let needle = op.as_bytes();
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// Serve the trained model once; the scores of a few pairs.
fn scores(project: &Project) -> Vec<Value> {
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let pairs = [
        ("Will you raise taxes?", "Q: Will you?\nA: No, we will not."),
        (
            "Why?",
            "Q: Why did you vote against it?\nA: Let me talk about jobs instead.",
        ),
        (
            "Is it done?",
            "Q: Is the deal done?\nA: Yes, signed this morning.",
        ),
    ];
    let out = pairs
        .iter()
        .map(|(q, c)| {
            let (status, body) =
                server.post_json("/classify/tiny", &json!({"question": q, "context": c}));
            assert_eq!(status, 200, "{body}");
            body["scores"].clone()
        })
        .collect();
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
    out
}

#[test]
fn the_fused_graph_serves_what_the_standard_graph_serves() {
    let project = Project::new("");
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    write_yaml(&project, "fused");
    project.host_ok(&["train", "--model", "tiny"]);
    let graph = project.path().join("artifacts/tiny/model.onnx");
    for op in [
        "com.microsoft",
        "Attention",
        "SkipLayerNormalization",
        "BiasGelu",
    ] {
        assert!(has_op(&graph, op), "the fused graph has no {op}");
    }
    let fused = scores(&project);

    // The same weights written in standard operators.
    write_yaml(&project, "standard");
    project.host_ok(&["export", "--model", "tiny"]);
    assert!(!has_op(&graph, "SkipLayerNormalization"), "still fused");
    let standard = scores(&project);
    for (f, s) in fused.iter().zip(&standard) {
        let labels = s.as_object().expect("scores");
        for (label, p) in labels {
            let (a, b) = (f[label].as_f64().unwrap_or(-1.0), p.as_f64().unwrap_or(1.0));
            assert!((a - b).abs() < 1e-4, "{label}: fused {a}, standard {b}");
        }
    }

    // Quantized, the fused attention becomes int8 `QAttention`.
    write_yaml(&project, "fused");
    project.host_ok(&["export", "--model", "tiny", "--quantize", "int8"]);
    let int8 = project.path().join("artifacts/tiny/model.int8.onnx");
    assert!(
        has_op(&int8, "QAttention"),
        "no QAttention in the int8 graph"
    );
    assert_eq!(scores(&project).len(), 3);
}

#[test]
fn a_wrong_onnx_ops_value_is_a_config_error_naming_the_option() {
    let project = Project::new("");
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    write_yaml(&project, "flash");
    let out = project.host(&["train", "--model", "tiny"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "train accepted onnx_ops: flash");
    assert!(
        stderr.contains("model_config.options.onnx_ops") && stderr.contains("flash"),
        "{stderr}"
    );
}
