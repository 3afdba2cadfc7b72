//! Encoding round trips and the checks `save` runs. Running graphs through ONNX Runtime is
//! tested in `serve::tests`.

use super::proto::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, AttributeType, DataLocation,
    DataType, ModelProto, TensorProto, ValueInfoProto,
};
use super::*;
use prost::Message;

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(raw: &[u8]) -> Vec<i64> {
    raw.chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn dims_of(v: &ValueInfoProto) -> Vec<DimValue> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref() else {
        panic!("not a tensor type");
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| d.value.clone().unwrap())
        .collect()
}

fn initializer<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
    model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap()
}

/// A small classifier head: embedding, mean over the sequence, linear layer.
fn tiny_model() -> ModelProto {
    let mut g = GraphBuilder::new("tiny");
    let ids = g.input(
        "input_ids",
        ElemType::Int64,
        &["batch".into(), Dim::Symbolic("seq".into())],
    );
    let emb = g.weight("emb", &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let x = g.gather(&emb, &ids, 0);
    let pooled = g.reduce_mean(&x, &[1], false);
    let w = g.weight("w", &[2, 2], &[1.0, 0.0, 0.0, -1.0]);
    let y = g.matmul(&pooled, &w);
    g.output(&y, "logits", ElemType::Float, &["batch".into(), 2.into()]);
    g.finish(OPSET)
}

#[test]
fn a_model_decodes_back_with_every_field() {
    let bytes = tiny_model().encode_to_vec();
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(model.ir_version, Some(8));
    assert_eq!(model.producer_name.as_deref(), Some("clarity"));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(model.opset_import[0].version, Some(17));

    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.name.as_deref(), Some("tiny"));
    assert_eq!(graph.input[0].name.as_deref(), Some("input_ids"));
    assert_eq!(
        dims_of(&graph.input[0]),
        vec![
            DimValue::DimParam("batch".into()),
            DimValue::DimParam("seq".into())
        ]
    );
    assert_eq!(graph.output[0].name.as_deref(), Some("logits"));
    assert_eq!(
        dims_of(&graph.output[0]),
        vec![DimValue::DimParam("batch".into()), DimValue::DimValue(2)]
    );

    let ops: Vec<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    assert_eq!(ops, ["Gather", "ReduceMean", "MatMul", "Identity"]);
    assert_eq!(graph.node[3].output, ["logits"]);
    let mean = &graph.node[1];
    assert_eq!(mean.attribute.len(), 2);
    assert_eq!(mean.attribute[0].name.as_deref(), Some("axes"));
    assert_eq!(mean.attribute[0].r#type, Some(AttributeType::Ints as i32));
    assert_eq!(mean.attribute[0].ints, [1]);
    // keepdims = 0 is still written: proto2 optional.
    assert_eq!(mean.attribute[1].i, Some(0));
    assert_eq!(mean.attribute[1].r#type, Some(AttributeType::Int as i32));

    let emb = initializer(&model, "emb");
    assert_eq!(emb.dims, [3, 2]);
    assert_eq!(emb.data_type, Some(DataType::Float as i32));
    assert_eq!(
        f32s(emb.raw_data.as_ref().unwrap()),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    check(&model).unwrap();
}

#[test]
fn names_are_unique_and_auto_named_by_op() {
    let mut g = GraphBuilder::new("names");
    let x = g.input("x", ElemType::Float, &[4.into()]);
    let a = g.weight("w", &[4], &[1.0; 4]);
    let b = g.weight("w", &[4], &[2.0; 4]);
    assert_eq!((a.as_str(), b.as_str()), ("w", "w_1"));
    let s = g.add(&x, &a);
    assert!(s.starts_with('n') && s.ends_with("_Add"), "{s}");
    let parts = g.node_multi("Split", &[&s], 2, vec![Attr::int("axis", 0)]);
    assert_eq!(parts.len(), 2);
    assert!(parts[0].ends_with("_Split_0") && parts[1].ends_with("_Split_1"));
    let c1 = g.const_i64(&[1]);
    let c2 = g.const_i64(&[1]);
    assert_ne!(c1, c2);
    g.output(&parts[0], "y", ElemType::Float, &[2.into()]);
    let model = g.finish(OPSET);
    check(&model).unwrap();
    let graph = model.graph.unwrap();
    let mut outputs: Vec<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
    let n = outputs.len();
    outputs.sort();
    outputs.dedup();
    assert_eq!(outputs.len(), n);
}

#[test]
fn constants_and_scalars() {
    let mut g = GraphBuilder::new("c");
    let c = g.const_i64(&[0, 0, -1]);
    let s = g.scalar_f32(0.5);
    let i = g.scalar_i64(-3);
    let model = g.finish(OPSET);
    let c = initializer(&model, &c);
    assert_eq!(c.dims, [3]);
    assert_eq!(c.data_type, Some(DataType::Int64 as i32));
    assert_eq!(i64s(c.raw_data.as_ref().unwrap()), [0, 0, -1]);
    let s = initializer(&model, &s);
    assert!(s.dims.is_empty());
    assert_eq!(f32s(s.raw_data.as_ref().unwrap()), [0.5]);
    let i = initializer(&model, &i);
    assert!(i.dims.is_empty());
    assert_eq!(i64s(i.raw_data.as_ref().unwrap()), [-3]);
}

#[test]
fn f16_weights_are_stored_half_and_cast_to_float() {
    let mut g = GraphBuilder::new("h");
    let w = g.weight_f16("w", &[2], &[1.5, -0.1]);
    assert_eq!(w, "w");
    let model = g.finish(OPSET);
    let stored = initializer(&model, "w_f16");
    assert_eq!(stored.data_type, Some(DataType::Float16 as i32));
    let raw = stored.raw_data.as_ref().unwrap();
    assert_eq!(raw.len(), 4);
    let back: Vec<f32> = raw
        .chunks(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    assert_eq!(back[0], 1.5);
    assert!((back[1] + 0.1).abs() < 1e-4);
    let cast = &model.graph.as_ref().unwrap().node[0];
    assert_eq!(cast.op_type.as_deref(), Some("Cast"));
    assert_eq!(cast.input, ["w_f16"]);
    assert_eq!(cast.output, ["w"]);
    assert_eq!(cast.attribute[0].i, Some(1));
}

#[test]
fn attributes_carry_their_type() {
    let cases = [
        (Attr::int("a", 0), AttributeType::Int),
        (Attr::float("b", 0.0), AttributeType::Float),
        (Attr::ints("c", vec![1, 2]), AttributeType::Ints),
        (Attr::floats("d", vec![1.0]), AttributeType::Floats),
        (Attr::string("e", "tanh"), AttributeType::String),
    ];
    for (attr, kind) in cases {
        let proto = attr.into_proto();
        assert_eq!(proto.r#type, Some(kind as i32));
    }
    assert_eq!(Attr::string("e", "tanh").into_proto().s.unwrap(), b"tanh");
}

#[test]
fn repeated_ints_are_written_unpacked() {
    let bytes = Attr::ints("perm", vec![1, 2]).into_proto().encode_to_vec();
    // field 8, varint wire type, once per value: 0x40 1 0x40 2.
    assert!(
        bytes.windows(4).any(|w| w == [0x40, 1, 0x40, 2]),
        "{bytes:?}"
    );
}

#[test]
fn check_reports_dangling_and_duplicate_values() {
    let mut g = GraphBuilder::new("bad");
    let x = g.input("x", ElemType::Float, &[1.into()]);
    g.add(&x, "nowhere");
    let err = check(&g.finish(OPSET)).unwrap_err().to_string();
    assert!(err.contains("`nowhere`") && err.contains("Add"), "{err}");

    let mut g = GraphBuilder::new("dup");
    let x = g.input("x", ElemType::Float, &[1.into()]);
    let y = g.relu(&x);
    g.output(&y, "x", ElemType::Float, &[1.into()]);
    let err = check(&g.finish(OPSET)).unwrap_err().to_string();
    assert!(err.contains("`x` is defined twice"), "{err}");

    let mut g = GraphBuilder::new("missing-output");
    g.input("x", ElemType::Float, &[1.into()]);
    g.output("y", "y", ElemType::Float, &[1.into()]);
    let err = check(&g.finish(OPSET)).unwrap_err().to_string();
    assert!(err.contains("graph output `y`"), "{err}");
}

#[test]
fn check_reports_a_weight_that_does_not_fill_its_shape() {
    let mut g = GraphBuilder::new("short");
    g.weight("w", &[2, 3], &[1.0; 5]);
    let err = check(&g.finish(OPSET)).unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("[2, 3]"), "{err}");
}

#[test]
fn save_writes_atomically_and_refuses_bad_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    save(tiny_model(), &path).unwrap();
    let back = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert_eq!(back, tiny_model());
    // No temp files or data file left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["model.onnx"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    let mut g = GraphBuilder::new("bad");
    g.node("Relu", &["ghost"], vec![]);
    let err = save(g.finish(OPSET), &dir.path().join("bad.onnx")).unwrap_err();
    assert!(matches!(err, OnnxError::Invalid(_)), "{err}");
    assert!(!dir.path().join("bad.onnx").exists());

    let err = save(tiny_model(), &dir.path().join("no/such/dir/m.onnx")).unwrap_err();
    assert!(err.to_string().contains("no/such/dir/m.onnx"), "{err}");
}

#[test]
fn large_weights_go_to_aligned_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let original = tiny_model();
    let layout = Layout {
        external_above: 0,
        min_tensor_bytes: 16,
    };
    save_with(original.clone(), &path, layout).unwrap();
    let data = std::fs::read(dir.path().join("model.onnx.data")).unwrap();
    let back = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    check(&back).unwrap();

    for name in ["emb", "w"] {
        let t = initializer(&back, name);
        assert_eq!(t.data_location, Some(DataLocation::External as i32));
        assert!(t.raw_data.is_none());
        let field = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(k))
                .and_then(|e| e.value.clone())
                .unwrap()
        };
        assert_eq!(field("location"), "model.onnx.data");
        let offset: usize = field("offset").parse().unwrap();
        let length: usize = field("length").parse().unwrap();
        assert_eq!(offset % 64, 0);
        let expected = initializer(&original, name).raw_data.clone().unwrap();
        assert_eq!(&data[offset..offset + length], expected.as_slice());
    }

    // Saving the same path inline again removes the stale data file.
    save(tiny_model(), &path).unwrap();
    assert!(!dir.path().join("model.onnx.data").exists());
}

#[test]
fn small_tensors_stay_inline_below_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let layout = Layout {
        external_above: 0,
        min_tensor_bytes: 20,
    };
    save_with(tiny_model(), &path, layout).unwrap();
    let back = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    // `emb` is 24 bytes (moves), `w` is 16 (stays).
    assert_eq!(
        initializer(&back, "emb").data_location,
        Some(DataLocation::External as i32)
    );
    assert!(initializer(&back, "w").raw_data.is_some());
}
