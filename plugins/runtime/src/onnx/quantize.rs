//! Dynamic int8 quantization of a finished fp32 graph, the way ONNX Runtime's own
//! `quantize_dynamic` does it, without Python.
//!
//! - Every `MatMul` whose B is a constant `[K, N]` matrix (an f32 initializer, an f16 one
//!   behind a `Cast`, or an int8 one behind a `DequantizeLinear`) gets int8 weights with one
//!   symmetric scale per output channel; its activation is quantized at run time to uint8.
//! - Every `com.microsoft.Attention` whose packed Q/K/V weights are a constant becomes a
//!   `com.microsoft.QAttention` with those weights int8 per column (the encoder's fused graph
//!   form; `quantize_dynamic` in ONNX Runtime does the same). Its input is quantized at run
//!   time like a matmul's. The QDQ form keeps attention f32.
//! - Every `Gather` on axis 0 of a constant `[rows, cols]` table (the embeddings, about half of
//!   a small encoder's parameters) gets an int8 table with one scale per row: the rows picked
//!   are cast to f32 and multiplied by their gathered scales.
//! - LayerNorm, softmax, biases and matrices with fewer than [`QuantizeOptions::min_channels`]
//!   rows or columns (a classifier's output layer) stay f32.
//!
//! Which operator form carries the int8 matmul is [`MatMulForm`]; how the weights are stored,
//! [`WeightRange`]. The defaults are what measured fastest and accurate on an AVX2 CPU
//! without VNNI (README, "int8 serving").

use super::proto::{
    AttributeProto, AttributeType, DataLocation, DataType, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto,
};
use super::OnnxError;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The operator form of a quantized matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatMulForm {
    /// `DynamicQuantizeLinear` + `MatMulInteger` + `Cast` + `Mul` by the scale product:
    /// standard ONNX, which ONNX Runtime fuses into `MatMulIntegerToFloat` at load.
    Integer,
    /// One `com.microsoft.DynamicQuantizeMatMul` per matmul, with the bias folded in.
    Fused,
    /// QDQ: `DynamicQuantizeLinear` → `DequantizeLinear` on the activation and
    /// `DequantizeLinear` on the weight around a float `MatMul`.
    Qdq,
}

/// How the matmul weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRange {
    /// int8 in [-127, 127].
    Int8,
    /// int8 in [-63, 63] (ONNX Runtime's `reduce_range`): u8 × s8 pair sums cannot
    /// saturate the 16-bit accumulators of AVX2 without VNNI.
    Int7,
    /// uint8 with zero point 128 (u8 × u8: no saturation, other kernels).
    Uint8,
}

impl WeightRange {
    fn qmax(self) -> f32 {
        match self {
            WeightRange::Int8 | WeightRange::Uint8 => 127.0,
            WeightRange::Int7 => 63.0,
        }
    }
}

/// What [`quantize_dynamic`] rewrites, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// The operator form of each matmul.
    pub form: MatMulForm,
    /// How matmul weights are stored.
    pub weights: WeightRange,
    /// Quantize constant embedding tables read by `Gather`.
    pub embeddings: bool,
    /// Matrices with fewer rows or columns than this stay f32 (a 3-label output layer costs
    /// nothing and is where rounding would show most).
    pub min_channels: usize,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            form: MatMulForm::Integer,
            weights: WeightRange::Int7,
            embeddings: true,
            min_channels: 16,
        }
    }
}

impl QuantizeOptions {
    /// A short description for metadata and `info` (e.g. `int8 dynamic, MatMulInteger, ...`).
    pub fn describe(&self) -> String {
        let form = match self.form {
            MatMulForm::Integer => "MatMulInteger",
            MatMulForm::Fused => "DynamicQuantizeMatMul",
            MatMulForm::Qdq => "QDQ",
        };
        let weights = match self.weights {
            WeightRange::Int8 => "int8 weights",
            WeightRange::Int7 => "7-bit int8 weights",
            WeightRange::Uint8 => "uint8 weights",
        };
        format!("int8 dynamic ({form}, {weights} per output channel, uint8 activations)")
    }
}

/// What [`quantize_dynamic`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantizeSummary {
    /// Matmuls now int8.
    pub matmuls: usize,
    /// Embedding lookups now int8.
    pub gathers: usize,
    /// Matmuls on constant weights left f32 (too small).
    pub kept_f32: usize,
}

/// Metadata key recording the quantization in the written model.
pub const QUANTIZATION_KEY: &str = "clarity.quantization";

/// Read an ONNX model from `path`.
pub fn load(path: &Path) -> Result<ModelProto, OnnxError> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::io(path, e))?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read the fp32 model at `from`, quantize it with `options` and write it to `to` (atomically).
pub fn quantize_file(
    from: &Path,
    to: &Path,
    options: &QuantizeOptions,
) -> Result<QuantizeSummary, OnnxError> {
    let (model, summary) = quantize_dynamic(load(from)?, options)?;
    super::save(model, to)?;
    Ok(summary)
}

/// Rewrite `model` (fp32) into a dynamically quantized one; see the module docs.
pub fn quantize_dynamic(
    mut model: ModelProto,
    options: &QuantizeOptions,
) -> Result<(ModelProto, QuantizeSummary), OnnxError> {
    let graph = model
        .graph
        .take()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let mut pass = Pass::new(&graph, *options);
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    let mut skip: HashSet<usize> = HashSet::new();
    for (i, node) in graph.node.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let op = node.op_type.as_deref().unwrap_or_default();
        let default_domain = node.domain.as_deref().unwrap_or_default().is_empty();
        let rewritten = match (op, default_domain) {
            ("MatMul", true) => pass.matmul(node, &graph, i, &mut skip),
            ("Attention", false) if node.domain.as_deref() == Some(super::CONTRIB_DOMAIN) => {
                pass.attention(node)
            }
            ("Gather", true) if options.embeddings => pass.gather(node),
            _ => None,
        };
        match rewritten {
            Some(new) => nodes.extend(new),
            None => nodes.push(node.clone()),
        }
    }
    let Pass {
        summary,
        new_initializers,
        uses_contrib,
        ..
    } = pass;
    let mut graph = graph;
    graph.node = nodes;
    graph.initializer.extend(new_initializers);
    prune(&mut graph);
    if uses_contrib
        && !model
            .opset_import
            .iter()
            .any(|o| o.domain.as_deref() == Some("com.microsoft"))
    {
        model.opset_import.push(OperatorSetIdProto {
            domain: Some("com.microsoft".into()),
            version: Some(1),
        });
    }
    model
        .metadata_props
        .retain(|p| p.key.as_deref() != Some(QUANTIZATION_KEY));
    model.metadata_props.push(StringStringEntryProto {
        key: Some(QUANTIZATION_KEY.into()),
        value: Some(options.describe()),
    });
    model.graph = Some(graph);
    super::check(&model)?;
    Ok((model, summary))
}

/// `[rows, cols]` f32 values of a constant.
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

/// Per-slice symmetric quantization: `(scales, values)` with `value = round(x / scale)`,
/// `scale = max|x| / qmax`, one scale per row (`axis` 0) or per column (`axis` 1).
pub fn quantize_symmetric(
    m_rows: usize,
    m_cols: usize,
    data: &[f32],
    axis: usize,
    qmax: f32,
) -> (Vec<f32>, Vec<i8>) {
    let slices = if axis == 0 { m_rows } else { m_cols };
    let slice = |k: usize| if axis == 0 { k / m_cols } else { k % m_cols };
    let mut max = vec![0f32; slices];
    for (k, &x) in data.iter().enumerate() {
        let m = &mut max[slice(k)];
        *m = m.max(x.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / qmax } else { 1.0 })
        .collect();
    let values = data
        .iter()
        .enumerate()
        .map(|(k, &x)| (x / scales[slice(k)]).round().clamp(-qmax, qmax) as i8)
        .collect();
    (scales, values)
}

/// The rewrite's state: constants it can read, names it has used, what it added.
struct Pass<'g> {
    options: QuantizeOptions,
    initializers: HashMap<&'g str, &'g TensorProto>,
    producers: HashMap<&'g str, &'g NodeProto>,
    /// How many nodes read each value (a folded bias needs the matmul to be its only reader).
    readers: HashMap<&'g str, usize>,
    graph_outputs: HashSet<&'g str>,
    taken: HashSet<String>,
    /// Activation → its `DynamicQuantizeLinear` outputs (q, scale, zero point), shared by
    /// every matmul reading it (Q, K and V quantize their input once).
    quantized: HashMap<String, [String; 3]>,
    /// Activation → its `DequantizeLinear` output (QDQ form).
    dequantized: HashMap<String, String>,
    new_initializers: Vec<TensorProto>,
    uses_contrib: bool,
    summary: QuantizeSummary,
}

impl<'g> Pass<'g> {
    fn new(graph: &'g super::proto::GraphProto, options: QuantizeOptions) -> Self {
        let mut taken = HashSet::new();
        let mut readers: HashMap<&str, usize> = HashMap::new();
        let mut producers = HashMap::new();
        for node in &graph.node {
            for input in &node.input {
                *readers.entry(input.as_str()).or_default() += 1;
            }
            for output in &node.output {
                producers.insert(output.as_str(), node);
                taken.insert(output.clone());
            }
            if let Some(name) = &node.name {
                taken.insert(name.clone());
            }
        }
        let initializers: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.as_deref()?, t)))
            .collect();
        taken.extend(initializers.keys().map(|k| k.to_string()));
        taken.extend(graph.input.iter().filter_map(|i| i.name.clone()));
        Self {
            options,
            initializers,
            producers,
            readers,
            graph_outputs: graph
                .output
                .iter()
                .filter_map(|o| o.name.as_deref())
                .collect(),
            taken,
            quantized: HashMap::new(),
            dequantized: HashMap::new(),
            new_initializers: Vec::new(),
            uses_contrib: false,
            summary: QuantizeSummary::default(),
        }
    }

    /// `base`, or `base_1`, ... if taken.
    fn fresh(&mut self, base: &str) -> String {
        super::builder::fresh_name(&mut self.taken, base)
    }

    fn add_initializer(&mut self, base: &str, mut tensor: TensorProto) -> String {
        let name = self.fresh(base);
        tensor.name = Some(name.clone());
        self.new_initializers.push(tensor);
        name
    }

    /// The values of a constant 2-D f32 matrix, if `name` is one we can read.
    fn matrix(&self, name: &str) -> Option<Matrix> {
        if let Some(t) = self.initializers.get(name) {
            return floats(t);
        }
        let node = self.producers.get(name)?;
        match node.op_type.as_deref()? {
            "Cast" if int_attr(node, "to") == Some(DataType::Float as i64) => {
                let t = self.initializers.get(node.input.first()?.as_str())?;
                (t.data_type == Some(DataType::Float16 as i32)).then(|| halves(t))?
            }
            "DequantizeLinear" => {
                let t = self.initializers.get(node.input.first()?.as_str())?;
                let scale = floats_1d(self.initializers.get(node.input.get(1)?.as_str())?)?;
                if node.input.get(2).is_some_and(|z| !z.is_empty()) {
                    return None;
                }
                dequantize_int8(t, &scale, int_attr(node, "axis").unwrap_or(1))
            }
            _ => None,
        }
    }

    /// `x`'s `DynamicQuantizeLinear` outputs, emitting the node on first use.
    fn quantize_activation(&mut self, x: &str, out: &mut Vec<NodeProto>) -> [String; 3] {
        if let Some(q) = self.quantized.get(x) {
            return q.clone();
        }
        let base = format!("{}_quant", x);
        let q = [
            self.fresh(&base),
            self.fresh(&format!("{base}_scale")),
            self.fresh(&format!("{base}_zero_point")),
        ];
        let name = self.fresh(&format!("{base}_node"));
        out.push(node(&name, "DynamicQuantizeLinear", &[x], &q, vec![]));
        self.quantized.insert(x.to_string(), q.clone());
        q
    }

    /// Store `w` quantized per column: (values, scales, zero point or "").
    fn store_weights(&mut self, base: &str, w: &Matrix) -> (String, String, String) {
        let range = self.options.weights;
        let (scales, values) = quantize_symmetric(w.rows, w.cols, &w.data, 1, range.qmax());
        let dims = [w.rows as i64, w.cols as i64];
        let (raw, data_type): (Vec<u8>, _) = match range {
            WeightRange::Uint8 => (
                values.iter().map(|&q| (q as i16 + 128) as u8).collect(),
                DataType::Uint8,
            ),
            _ => (values.iter().map(|&q| q as u8).collect(), DataType::Int8),
        };
        let q = self.add_initializer(
            &format!("{base}_quantized"),
            raw_tensor(data_type, &dims, raw),
        );
        let s = self.add_initializer(
            &format!("{base}_scale"),
            f32_tensor(&[w.cols as i64], &scales),
        );
        let zp = match range {
            WeightRange::Uint8 => self.add_initializer(
                &format!("{base}_zero_point"),
                raw_tensor(DataType::Uint8, &[w.cols as i64], vec![128; w.cols]),
            ),
            _ => String::new(),
        };
        (q, s, zp)
    }

    /// The int8 replacement of `MatMul(x, W)`, or None to keep it.
    fn matmul(
        &mut self,
        mm: &NodeProto,
        graph: &super::proto::GraphProto,
        index: usize,
        skip: &mut HashSet<usize>,
    ) -> Option<Vec<NodeProto>> {
        let [x, b] = [mm.input.first()?, mm.input.get(1)?];
        let w = self.matrix(b)?;
        let min = self.options.min_channels;
        if w.rows < min || w.cols < min {
            self.summary.kept_f32 += 1;
            return None;
        }
        let y = mm.output.first()?.clone();
        let base = mm.name.clone().unwrap_or_else(|| y.clone());
        let (wq, ws, wzp) = self.store_weights(b, &w);
        let mut out = Vec::new();
        match self.options.form {
            MatMulForm::Integer => {
                let [xq, xs, xzp] = self.quantize_activation(x, &mut out);
                let product = self.fresh(&format!("{base}_int32"));
                let mut inputs = vec![xq.as_str(), wq.as_str(), xzp.as_str()];
                if !wzp.is_empty() {
                    inputs.push(&wzp);
                }
                let n = self.fresh(&format!("{base}_MatMulInteger"));
                out.push(node(
                    &n,
                    "MatMulInteger",
                    &inputs,
                    std::slice::from_ref(&product),
                    vec![],
                ));
                let as_float = self.fresh(&format!("{base}_float"));
                let n = self.fresh(&format!("{base}_Cast"));
                out.push(node(
                    &n,
                    "Cast",
                    &[&product],
                    std::slice::from_ref(&as_float),
                    vec![int("to", DataType::Float as i64)],
                ));
                let scale = self.fresh(&format!("{base}_scale_product"));
                let n = self.fresh(&format!("{base}_scale_Mul"));
                out.push(node(
                    &n,
                    "Mul",
                    &[&xs, &ws],
                    std::slice::from_ref(&scale),
                    vec![],
                ));
                let n = self.fresh(&format!("{base}_Mul"));
                out.push(node(&n, "Mul", &[&as_float, &scale], &[y], vec![]));
            }
            MatMulForm::Fused => {
                // Fold a following `Add` of a constant bias when the matmul is its only input.
                let bias = self.foldable_bias(&y, w.cols, graph, index);
                let (target, bias_name) = match bias {
                    Some((add_index, bias_name, add_out)) => {
                        skip.insert(add_index);
                        (add_out, bias_name)
                    }
                    None => (y, String::new()),
                };
                let n = self.fresh(&format!("{base}_DynamicQuantizeMatMul"));
                let mut node = node(
                    &n,
                    "DynamicQuantizeMatMul",
                    &[x, &wq, &ws, &wzp, &bias_name],
                    &[target],
                    vec![],
                );
                while node.input.last().is_some_and(String::is_empty) {
                    node.input.pop();
                }
                node.domain = Some("com.microsoft".into());
                self.uses_contrib = true;
                out.push(node);
            }
            MatMulForm::Qdq => {
                let [xq, xs, xzp] = self.quantize_activation(x, &mut out);
                let xdq = match self.dequantized.get(x.as_str()) {
                    Some(d) => d.clone(),
                    None => {
                        let d = self.fresh(&format!("{x}_dequant"));
                        let n = self.fresh(&format!("{x}_DequantizeLinear"));
                        out.push(node(
                            &n,
                            "DequantizeLinear",
                            &[&xq, &xs, &xzp],
                            std::slice::from_ref(&d),
                            vec![],
                        ));
                        self.dequantized.insert(x.clone(), d.clone());
                        d
                    }
                };
                let wdq = self.fresh(&format!("{base}_weight_dequant"));
                let n = self.fresh(&format!("{base}_weight_DequantizeLinear"));
                let mut inputs = vec![wq.as_str(), ws.as_str()];
                if !wzp.is_empty() {
                    inputs.push(&wzp);
                }
                out.push(node(
                    &n,
                    "DequantizeLinear",
                    &inputs,
                    std::slice::from_ref(&wdq),
                    vec![int("axis", 1)],
                ));
                let n = self.fresh(&format!("{base}_MatMul"));
                out.push(node(&n, "MatMul", &[&xdq, &wdq], &[y], vec![]));
            }
        }
        self.summary.matmuls += 1;
        Some(out)
    }

    /// The `QAttention` replacement of `Attention(x, W, bias, mask)` with a constant `W`, or
    /// None to keep it (other inputs, or the QDQ form).
    fn attention(&mut self, a: &NodeProto) -> Option<Vec<NodeProto>> {
        if self.options.form == MatMulForm::Qdq || a.input.len() > 4 || a.output.len() != 1 {
            return None;
        }
        let [x, b, bias] = [a.input.first()?, a.input.get(1)?, a.input.get(2)?];
        let w = self.matrix(b)?;
        let mask = a.input.get(3).cloned().unwrap_or_default();
        let base = a.name.clone().unwrap_or_else(|| a.output[0].clone());
        let (wq, ws, wzp) = self.store_weights(b, &w);
        let mut out = Vec::new();
        let [xq, xs, xzp] = self.quantize_activation(x, &mut out);
        let n = self.fresh(&format!("{base}_QAttention"));
        let mut q = node(
            &n,
            "QAttention",
            &[&xq, &wq, bias, &xs, &ws, &mask, &xzp, &wzp],
            &a.output,
            a.attribute.clone(),
        );
        while q.input.last().is_some_and(String::is_empty) {
            q.input.pop();
        }
        q.domain = Some(super::CONTRIB_DOMAIN.into());
        self.uses_contrib = true;
        out.push(q);
        self.summary.matmuls += 1;
        Some(out)
    }

    /// `(index of the Add, bias initializer, Add output)` when `y` feeds only an `Add` of a
    /// constant `[cols]` vector right after it.
    fn foldable_bias(
        &self,
        y: &str,
        cols: usize,
        graph: &super::proto::GraphProto,
        index: usize,
    ) -> Option<(usize, String, String)> {
        if self.readers.get(y) != Some(&1) || self.graph_outputs.contains(y) {
            return None;
        }
        let (add_index, add) = graph
            .node
            .iter()
            .enumerate()
            .skip(index + 1)
            .find(|(_, n)| n.input.iter().any(|i| i == y))?;
        if add.op_type.as_deref() != Some("Add") || add.input.len() != 2 {
            return None;
        }
        let other = if add.input[0] == y {
            &add.input[1]
        } else {
            &add.input[0]
        };
        let bias = self.initializers.get(other.as_str())?;
        (bias.dims == [cols as i64] && bias.data_type == Some(DataType::Float as i32)).then(|| {
            (
                add_index,
                other.clone(),
                add.output.first().cloned().unwrap_or_default(),
            )
        })
    }

    /// The int8 replacement of an embedding lookup `Gather(table, ids)`, or None to keep it.
    fn gather(&mut self, g: &NodeProto) -> Option<Vec<NodeProto>> {
        let [table, ids] = [g.input.first()?, g.input.get(1)?];
        if int_attr(g, "axis").unwrap_or(0) != 0 {
            return None;
        }
        let m = self.matrix(table)?;
        let min = self.options.min_channels;
        if m.rows < min || m.cols < min {
            return None;
        }
        let y = g.output.first()?.clone();
        let base = g.name.clone().unwrap_or_else(|| y.clone());
        let (scales, values) = quantize_symmetric(m.rows, m.cols, &m.data, 0, 127.0);
        let raw = values.iter().map(|&q| q as u8).collect();
        let q = self.add_initializer(
            &format!("{table}_quantized"),
            raw_tensor(DataType::Int8, &[m.rows as i64, m.cols as i64], raw),
        );
        let s = self.add_initializer(
            &format!("{table}_scale"),
            f32_tensor(&[m.rows as i64], &scales),
        );
        let axes = self.add_initializer(
            &format!("{base}_axes"),
            raw_tensor(DataType::Int64, &[1], (-1i64).to_le_bytes().to_vec()),
        );
        let picked = self.fresh(&format!("{base}_rows"));
        let as_float = self.fresh(&format!("{base}_rows_float"));
        let row_scales = self.fresh(&format!("{base}_row_scales"));
        let column = self.fresh(&format!("{base}_row_scales_column"));
        let names: Vec<String> = ["Gather", "Cast", "GatherScale", "Unsqueeze", "Mul"]
            .iter()
            .map(|op| self.fresh(&format!("{base}_{op}")))
            .collect();
        let out = vec![
            node(
                &names[0],
                "Gather",
                &[&q, ids],
                std::slice::from_ref(&picked),
                vec![int("axis", 0)],
            ),
            node(
                &names[1],
                "Cast",
                &[&picked],
                std::slice::from_ref(&as_float),
                vec![int("to", DataType::Float as i64)],
            ),
            node(
                &names[2],
                "Gather",
                &[&s, ids],
                std::slice::from_ref(&row_scales),
                vec![int("axis", 0)],
            ),
            node(
                &names[3],
                "Unsqueeze",
                &[&row_scales, &axes],
                std::slice::from_ref(&column),
                vec![],
            ),
            node(&names[4], "Mul", &[&as_float, &column], &[y], vec![]),
        ];
        self.summary.gathers += 1;
        Some(out)
    }
}

/// Drop nodes whose outputs nobody reads and initializers no node reads (the f32 weights
/// the rewrite replaced, and the `Cast`/`DequantizeLinear` that fed them).
fn prune(graph: &mut super::proto::GraphProto) {
    let mut live: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    let mut k = keep.into_iter();
    graph.node.retain(|_| k.next().unwrap_or(true));
    graph
        .initializer
        .retain(|t| t.name.as_ref().is_some_and(|n| live.contains(n)));
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[String],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.to_vec(),
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        attribute: attrs,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

fn raw_tensor(data_type: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn f32_tensor(dims: &[i64], data: &[f32]) -> TensorProto {
    raw_tensor(
        DataType::Float,
        dims,
        data.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// Inline data only: a tensor in external data is left as it is.
fn inline(t: &TensorProto) -> bool {
    t.data_location != Some(DataLocation::External as i32)
}

fn dims2(t: &TensorProto) -> Option<(usize, usize)> {
    match t.dims.as_slice() {
        &[r, c] if r > 0 && c > 0 => Some((r as usize, c as usize)),
        _ => None,
    }
}

/// A 2-D f32 initializer's values.
fn floats(t: &TensorProto) -> Option<Matrix> {
    if t.data_type != Some(DataType::Float as i32) || !inline(t) {
        return None;
    }
    let (rows, cols) = dims2(t)?;
    let data: Vec<f32> = match &t.raw_data {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        None => t.float_data.clone(),
    };
    (data.len() == rows * cols).then_some(Matrix { rows, cols, data })
}

/// A 1-D f32 initializer's values.
fn floats_1d(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != Some(DataType::Float as i32) || t.dims.len() > 1 || !inline(t) {
        return None;
    }
    Some(match &t.raw_data {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        None => t.float_data.clone(),
    })
}

/// A 2-D f16 initializer's values as f32.
fn halves(t: &TensorProto) -> Option<Matrix> {
    let (rows, cols) = dims2(t)?;
    let raw = t.raw_data.as_ref().filter(|_| inline(t))?;
    let data: Vec<f32> = raw
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    (data.len() == rows * cols).then_some(Matrix { rows, cols, data })
}

/// A 2-D int8 initializer times its per-`axis` scales.
fn dequantize_int8(t: &TensorProto, scales: &[f32], axis: i64) -> Option<Matrix> {
    if t.data_type != Some(DataType::Int8 as i32) {
        return None;
    }
    let (rows, cols) = dims2(t)?;
    let raw = t.raw_data.as_ref().filter(|_| inline(t))?;
    if raw.len() != rows * cols {
        return None;
    }
    let scale = |k: usize| -> Option<f32> {
        match (scales.len(), axis) {
            (1, _) => Some(scales[0]),
            (n, 1 | -1) if n == cols => Some(scales[k % cols]),
            (n, 0 | -2) if n == rows => Some(scales[k / cols]),
            _ => None,
        }
    };
    let data = raw
        .iter()
        .enumerate()
        .map(|(k, &b)| Some(b as i8 as f32 * scale(k)?))
        .collect::<Option<Vec<f32>>>()?;
    Some(Matrix { rows, cols, data })
}

#[cfg(test)]
#[path = "quantize_tests.rs"]
mod tests;
