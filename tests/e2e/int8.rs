//! `model_config.quantize: int8` end to end: `train` writes model.int8.onnx beside
//! model.onnx, `serve` loads it (and says so in `GET /`), a model whose int8 graph is missing
//! gets it written at load, and `export --quantize fp32|int8` removes or writes it.

use clarity_tests::encoder::{write_tiny_encoder, write_tiny_encoder_entry};
use clarity_tests::Project;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn write_yaml(project: &Project) {
    write_tiny_encoder_entry(project, "quantize: int8");
}

fn meta(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("encoder_meta.json")).expect("encoder_meta.json");
    serde_json::from_str(&text).expect("meta json")
}

/// Serve once: the model reports int8 and scores a pair.
fn serves_int8(project: &Project) -> String {
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let (_, root) = server.get("/");
    let text = root.to_string();
    assert!(
        text.contains(r#""precision":"int8""#) && text.contains("model.int8.onnx"),
        "{text}"
    );
    let (status, body) = server.post_json(
        "/classify/tiny",
        &json!({"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No."}),
    );
    assert_eq!(status, 200, "{body}");
    let sum: f64 = body["scores"]
        .as_object()
        .expect("scores")
        .values()
        .filter_map(|v| v.as_f64())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{body}");
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
    server.log()
}

#[test]
fn quantize_int8_trains_serves_and_exports_the_int8_graph() {
    let project = Project::new("");
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    write_yaml(&project);
    let out = project.host(&["train", "--model", "tiny"]);
    assert!(
        out.status.success(),
        "train failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = project.path().join("artifacts/tiny");
    let (fp32, int8) = (dir.join("model.onnx"), dir.join("model.int8.onnx"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(
        fp32.is_file() && int8.is_file(),
        "both graphs in {}",
        dir.display()
    );
    // The tiny BERT has BERT's 30522-token vocabulary: mostly embedding, like real models.
    assert!(
        (size(&int8) as f64) < 0.3 * size(&fp32) as f64,
        "int8 {} B vs fp32 {} B",
        size(&int8),
        size(&fp32)
    );
    let how = meta(&dir)["quantization"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(how.starts_with("int8 dynamic"), "{}", meta(&dir));

    serves_int8(&project);

    // fp32 export: the int8 graph of the old export goes, the meta says fp32.
    project.host_ok(&["export", "--model", "tiny", "--quantize", "fp32"]);
    assert!(fp32.is_file() && !int8.exists());
    assert!(meta(&dir).get("quantization").is_none(), "{}", meta(&dir));

    // Served with `quantize: int8` but without the file: written at load.
    let log = serves_int8(&project);
    assert!(int8.is_file(), "not written at load:\n{log}");
    assert!(log.contains("model.int8.onnx"), "{log}");

    // `export --quantize int8` writes it (and records it) for a trained model.
    std::fs::remove_file(&int8).expect("remove int8");
    let stdout = project.host_ok(&["export", "--model", "tiny", "--quantize", "int8"]);
    assert!(stdout.contains("artifacts/tiny"), "{stdout}");
    assert!(
        int8.is_file(),
        "export --quantize int8 wrote no model.int8.onnx"
    );
    assert!(meta(&dir)["quantization"].is_string(), "{}", meta(&dir));

    // A value it does not know is refused by the CLI, naming the choices.
    let out = project.host(&["export", "--model", "tiny", "--quantize", "int4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("int8, fp32, none"), "{err}");
}

/// The lora plugin: `quantize: int8` writes and serves the int8 graph of the merged decoder.
#[test]
fn a_lora_model_with_quantize_int8_serves_its_int8_graph() {
    let project = Project::new("");
    crate::lora::write_tiny_decoder(&project, "llama");
    crate::lora::write_yaml(&project, 1);
    let yaml = std::fs::read_to_string(project.config()).expect("models.yaml");
    assert!(yaml.contains("use_8bit: false}"), "{yaml}");
    let yaml = yaml.replace("use_8bit: false}", "use_8bit: false, quantize: int8}");
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    let out = project.host(&["train", "--model", "tiny"]);
    assert!(
        out.status.success(),
        "train failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = project.path().join("artifacts/tiny");
    assert!(dir.join("model.onnx").is_file() && dir.join("model.int8.onnx").is_file());
    let text = std::fs::read_to_string(dir.join("lora_meta.json")).expect("lora_meta.json");
    assert!(text.contains("\"quantization\": \"int8 dynamic"), "{text}");
    serves_int8(&project);
}
