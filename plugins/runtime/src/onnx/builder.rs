//! [`GraphBuilder`]: values, weights and nodes in insertion order, with unique names.
//!
//! Every method returns the name of the value it made, so an exporter reads like the forward
//! pass it mirrors. Mistakes that cannot be reported here (a dangling input, a weight whose
//! data does not fill its shape) are caught by [`super::check`] when the model is saved.

use super::proto::{
    self, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto, AttributeProto,
    AttributeType, DataType, NodeProto, TensorProto, ValueInfoProto,
};
use std::collections::HashSet;

/// ONNX Runtime's operator domain (its contrib ops, version 1).
pub const CONTRIB_DOMAIN: &str = "com.microsoft";

/// IR version we write (ONNX 1.10+, read by every ONNX Runtime we support).
pub const IR_VERSION: i64 = 8;

/// One axis of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A dynamic size, named so that axes sharing the name must agree (`batch`, `seq`).
    Symbolic(String),
}

impl From<i64> for Dim {
    fn from(size: i64) -> Self {
        Dim::Fixed(size)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Self {
        Dim::Symbolic(name.to_string())
    }
}

impl From<String> for Dim {
    fn from(name: String) -> Self {
        Dim::Symbolic(name)
    }
}

/// Element types our graphs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// f32 (ONNX 1).
    Float,
    /// i64 (ONNX 7).
    Int64,
    /// IEEE half (ONNX 10).
    Float16,
    /// bool (ONNX 9), e.g. a `Where` condition.
    Bool,
    /// i32 (ONNX 6), e.g. the mask of ONNX Runtime's `Attention`.
    Int32,
}

impl ElemType {
    /// The `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        let t = match self {
            ElemType::Float => DataType::Float,
            ElemType::Int64 => DataType::Int64,
            ElemType::Float16 => DataType::Float16,
            ElemType::Bool => DataType::Bool,
            ElemType::Int32 => DataType::Int32,
        };
        t as i32
    }
}

/// A node attribute, with its ONNX type set (ONNX Runtime rejects untyped attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct Attr(AttributeProto);

impl Attr {
    fn typed(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    /// An int attribute (`axis`, `to`, `keepdims`).
    pub fn int(name: &str, value: i64) -> Self {
        Self(AttributeProto {
            i: Some(value),
            ..Self::typed(name, AttributeType::Int)
        })
    }

    /// A float attribute (`epsilon`, `alpha`).
    pub fn float(name: &str, value: f32) -> Self {
        Self(AttributeProto {
            f: Some(value),
            ..Self::typed(name, AttributeType::Float)
        })
    }

    /// A list of ints (`perm`, `axes` where still an attribute).
    pub fn ints(name: &str, values: Vec<i64>) -> Self {
        Self(AttributeProto {
            ints: values,
            ..Self::typed(name, AttributeType::Ints)
        })
    }

    /// A list of floats.
    pub fn floats(name: &str, values: Vec<f32>) -> Self {
        Self(AttributeProto {
            floats: values,
            ..Self::typed(name, AttributeType::Floats)
        })
    }

    /// A string attribute (`mode`, `approximate`).
    pub fn string(name: &str, value: &str) -> Self {
        Self(AttributeProto {
            s: Some(value.as_bytes().to_vec()),
            ..Self::typed(name, AttributeType::String)
        })
    }

    /// A tensor attribute (`ConstantOfShape.value`).
    pub fn tensor(name: &str, value: TensorProto) -> Self {
        Self(AttributeProto {
            t: Some(value),
            ..Self::typed(name, AttributeType::Tensor)
        })
    }

    /// The wire form.
    pub fn into_proto(self) -> AttributeProto {
        self.0
    }
}

/// Builds one ONNX graph; see the module docs.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    metadata: Vec<proto::StringStringEntryProto>,
    taken: HashSet<String>,
    next_id: usize,
}

impl GraphBuilder {
    /// An empty graph called `graph_name`.
    pub fn new(graph_name: &str) -> Self {
        Self {
            name: graph_name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            metadata: Vec::new(),
            taken: HashSet::new(),
            next_id: 0,
        }
    }

    /// `base`, or `base_1`, `base_2`, ... if taken: value names must be unique in a graph.
    fn fresh(&mut self, base: &str) -> String {
        fresh_name(&mut self.taken, base)
    }

    /// A new id for auto-named values and nodes.
    fn next(&mut self) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Declare a graph input; returns its value name (`name` unless already taken).
    pub fn input(&mut self, name: &str, elem: ElemType, dims: &[Dim]) -> String {
        let name = self.fresh(name);
        self.inputs.push(value_info(&name, elem, dims));
        name
    }

    /// Mark `value` as the graph output `name`, through an `Identity` when the names differ.
    pub fn output(&mut self, value: &str, name: &str, elem: ElemType, dims: &[Dim]) {
        if value != name {
            // The output name must be exact: a clash is reported by `check` when saving.
            self.taken.insert(name.to_string());
            let id = self.next();
            self.nodes.push(NodeProto {
                input: vec![value.to_string()],
                output: vec![name.to_string()],
                name: Some(format!("n{id}_Identity")),
                op_type: Some("Identity".into()),
                ..Default::default()
            });
        }
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Add an initializer named after `base` (uniquified); returns its name.
    pub fn initializer(&mut self, base: &str, mut tensor: TensorProto) -> String {
        let name = self.fresh(base);
        tensor.name = Some(name.clone());
        self.initializers.push(tensor);
        name
    }

    /// An f32 weight stored as little-endian `raw_data`.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.initializer(name, f32_tensor(dims, data))
    }

    /// A weight stored as FLOAT16 (half the file) and cast back to f32 in the graph; returns
    /// the f32 value's name.
    pub fn weight_f16(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let stored = self.initializer(
            &format!("{name}_f16"),
            raw_tensor(DataType::Float16, &to_i64(dims), raw),
        );
        let out = self.fresh(name);
        let id = self.next();
        self.nodes.push(NodeProto {
            input: vec![stored],
            output: vec![out.clone()],
            name: Some(format!("n{id}_Cast")),
            op_type: Some("Cast".into()),
            attribute: vec![Attr::int("to", ElemType::Float.code() as i64).into_proto()],
            ..Default::default()
        });
        out
    }

    /// A 2-D weight `[rows, cols]` stored as int8 with one symmetric scale per slice along
    /// `axis` (0: per row, 1: per column). Returns `(int8 values, f32 scales)` initializer names:
    /// `dequantize_linear` or a gathered `Cast · scale` turns them back into f32 at run time,
    /// so the weight stays 8-bit in ONNX Runtime's memory (it does not constant-fold
    /// `DequantizeLinear`).
    pub fn weight_int8(
        &mut self,
        name: &str,
        dims: [usize; 2],
        data: &[f32],
        axis: usize,
    ) -> (String, String) {
        let (scales, values) = quantize_int8(dims, data, axis);
        let raw = values.iter().map(|&q| q as u8).collect();
        let stored = self.initializer(
            &format!("{name}_int8"),
            raw_tensor(DataType::Int8, &to_i64(&dims), raw),
        );
        let scale = self.initializer(
            &format!("{name}_scale"),
            f32_tensor(&[scales.len()], &scales),
        );
        (stored, scale)
    }

    /// `DequantizeLinear(x, scale)` along `axis` (zero point 0).
    pub fn dequantize_linear(&mut self, x: &str, scale: &str, axis: i64) -> String {
        self.node(
            "DequantizeLinear",
            &[x, scale],
            vec![Attr::int("axis", axis)],
        )
    }

    /// A 1-D int64 constant (shapes, axes, indices), auto-named.
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let id = self.next();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(
            &format!("c{id}_i64"),
            raw_tensor(DataType::Int64, &[values.len() as i64], raw),
        )
    }

    /// A 1-D f32 constant, auto-named.
    pub fn const_f32(&mut self, values: &[f32]) -> String {
        let id = self.next();
        self.initializer(&format!("c{id}_f32"), f32_tensor(&[values.len()], values))
    }

    /// A 0-D f32 constant (empty `dims`), auto-named.
    pub fn scalar_f32(&mut self, value: f32) -> String {
        let id = self.next();
        self.initializer(&format!("c{id}_f32"), f32_tensor(&[], &[value]))
    }

    /// A 0-D int64 constant, auto-named.
    pub fn scalar_i64(&mut self, value: i64) -> String {
        let id = self.next();
        let raw = value.to_le_bytes().to_vec();
        self.initializer(&format!("c{id}_i64"), raw_tensor(DataType::Int64, &[], raw))
    }

    /// Append an `op` node with one output, auto-named `n<id>_<op>`; returns that name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        let mut outputs = self.node_multi(op, inputs, 1, attrs);
        outputs.pop().unwrap_or_default()
    }

    /// Append an `op` node with `n_outputs` outputs (`n<id>_<op>_<k>`); returns their names.
    pub fn node_multi(
        &mut self,
        op: &str,
        inputs: &[&str],
        n_outputs: usize,
        attrs: Vec<Attr>,
    ) -> Vec<String> {
        let id = self.next();
        let base = format!("n{id}_{op}");
        let outputs: Vec<String> = if n_outputs == 1 {
            vec![self.fresh(&base)]
        } else {
            (0..n_outputs)
                .map(|k| self.fresh(&format!("{base}_{k}")))
                .collect()
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: Some(base),
            op_type: Some(op.to_string()),
            attribute: attrs.into_iter().map(Attr::into_proto).collect(),
            ..Default::default()
        });
        outputs
    }

    /// Append a node of ONNX Runtime's contrib domain (`com.microsoft`: `Attention`,
    /// `SkipLayerNormalization`, `BiasGelu`, ...); the model then imports that domain.
    pub fn contrib(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        let output = self.node(op, inputs, attrs);
        if let Some(node) = self.nodes.last_mut() {
            node.domain = Some(CONTRIB_DOMAIN.to_string());
        }
        output
    }

    /// Attach a `key: value` string to the model (labels, source model, ...).
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.push(proto::StringStringEntryProto {
            key: Some(key.to_string()),
            value: Some(value.to_string()),
        });
    }

    /// The model: IR version 8, producer `clarity`, the default domain at `opset` (and
    /// `com.microsoft` version 1 when a [`Self::contrib`] node is in it).
    ///
    /// The helpers in this module emit opset-17 operator forms (see [`super::OPSET`]).
    pub fn finish(self, opset: i64) -> proto::ModelProto {
        let mut opset_import = vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }];
        if self
            .nodes
            .iter()
            .any(|n| n.domain.as_deref() == Some(CONTRIB_DOMAIN))
        {
            opset_import.push(proto::OperatorSetIdProto {
                domain: Some(CONTRIB_DOMAIN.to_string()),
                version: Some(1),
            });
        }
        proto::ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import,
            producer_name: Some("clarity".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(proto::GraphProto {
                node: self.nodes,
                name: Some(self.name),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: self.metadata,
            ..Default::default()
        }
    }
}

/// Symmetric int8 quantization of a row-major `[rows, cols]` matrix, one scale per slice
/// along `axis`: `(scales, values)` with `value = round(x / scale)`, `scale = max|x| / 127`.
pub fn quantize_int8(dims: [usize; 2], data: &[f32], axis: usize) -> (Vec<f32>, Vec<i8>) {
    let [rows, cols] = dims;
    let slices = if axis == 0 { rows } else { cols };
    let index = |r: usize, c: usize| if axis == 0 { r } else { c };
    let mut max = vec![0f32; slices];
    for r in 0..rows {
        for c in 0..cols {
            let m = &mut max[index(r, c)];
            *m = m.max(data[r * cols + c].abs());
        }
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let mut values = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let q = (data[r * cols + c] / scales[index(r, c)]).round();
            values.push(q.clamp(-127.0, 127.0) as i8);
        }
    }
    (scales, values)
}

fn to_i64(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

/// A tensor of `data_type` holding `raw` little-endian bytes.
pub(crate) fn raw_tensor(data_type: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// An f32 tensor as raw little-endian bytes.
pub(crate) fn f32_tensor(dims: &[usize], data: &[f32]) -> TensorProto {
    let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    raw_tensor(DataType::Float, &to_i64(dims), raw)
}

fn value_info(name: &str, elem: ElemType, dims: &[Dim]) -> ValueInfoProto {
    let shape = Some(proto::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n),
                    Dim::Symbolic(s) => dimension::Value::DimParam(s.clone()),
                }),
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(proto::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem.code()),
                shape,
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// `base`, or `base_1`, `base_2`, ... whichever `taken` does not hold yet; it is added.
pub(crate) fn fresh_name(taken: &mut HashSet<String>, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 0;
    while taken.contains(&name) {
        k += 1;
        name = format!("{base}_{k}");
    }
    taken.insert(name.clone());
    name
}
