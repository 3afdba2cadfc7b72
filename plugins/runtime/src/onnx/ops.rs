//! Thin helpers over [`GraphBuilder::node`], one per operator an encoder (BERT, RoBERTa,
//! DistilBERT) or decoder (Llama: RMSNorm, rotary, GQA, causal mask) exporter needs.
//!
//! They emit the opset-17 form of each operator: `Unsqueeze`, `Squeeze`, `Slice`, `ReduceSum`
//! and `Split` take axes/sizes as int64 inputs, `ReduceMean`/`ReduceMax` as an attribute.

use super::builder::{Attr, ElemType, GraphBuilder};
use super::proto::DataType;

macro_rules! binary {
    ($($(#[$doc:meta])* $fn:ident => $op:literal;)*) => {$(
        $(#[$doc])*
        pub fn $fn(&mut self, a: &str, b: &str) -> String {
            self.node($op, &[a, b], vec![])
        }
    )*};
}

macro_rules! unary {
    ($($(#[$doc:meta])* $fn:ident => $op:literal;)*) => {$(
        $(#[$doc])*
        pub fn $fn(&mut self, x: &str) -> String {
            self.node($op, &[x], vec![])
        }
    )*};
}

impl GraphBuilder {
    binary! {
        /// `a @ b` with numpy broadcasting of batch axes.
        matmul => "MatMul";
        /// `a + b` (broadcasting).
        add => "Add";
        /// `a - b`.
        sub => "Sub";
        /// `a * b`.
        mul => "Mul";
        /// `a / b`.
        div => "Div";
        /// `a ^ b`.
        pow => "Pow";
        /// Element-wise maximum.
        max => "Max";
        /// Element-wise minimum.
        min => "Min";
        /// `a == b` (bool).
        equal => "Equal";
        /// `a < b` (bool).
        less => "Less";
        /// `a > b` (bool).
        greater => "Greater";
        /// Logical and of two bools.
        and => "And";
        /// Logical or of two bools.
        or => "Or";
    }

    unary! {
        /// Gauss error function (exact GELU).
        erf => "Erf";
        /// Hyperbolic tangent.
        tanh => "Tanh";
        /// `max(x, 0)`.
        relu => "Relu";
        /// Logistic sigmoid.
        sigmoid => "Sigmoid";
        /// Square root.
        sqrt => "Sqrt";
        /// `1 / x`.
        reciprocal => "Reciprocal";
        /// `-x`.
        neg => "Neg";
        /// `e^x`.
        exp => "Exp";
        /// Natural logarithm.
        log => "Log";
        /// Cosine (rotary tables).
        cos => "Cos";
        /// Sine (rotary tables).
        sin => "Sin";
        /// Logical not.
        not => "Not";
        /// A copy under a new name.
        identity => "Identity";
        /// The shape of `x` as a 1-D int64 tensor.
        shape => "Shape";
    }

    /// `data` indexed by `indices` along `axis` (embedding lookup, picking a dimension).
    pub fn gather(&mut self, data: &str, indices: &str, axis: i64) -> String {
        self.node("Gather", &[data, indices], vec![Attr::int("axis", axis)])
    }

    /// Permute axes.
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![Attr::ints("perm", perm.to_vec())])
    }

    /// Reshape to a constant shape (`0` copies the input axis, `-1` is inferred), so dynamic
    /// batch and sequence axes survive.
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.const_i64(shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    /// Reshape to a shape computed in the graph (a 1-D int64 value).
    pub fn reshape_to(&mut self, x: &str, shape: &str) -> String {
        self.node("Reshape", &[x, shape], vec![])
    }

    /// Insert axes of size 1.
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let axes = self.const_i64(axes);
        self.node("Unsqueeze", &[x, &axes], vec![])
    }

    /// Remove axes of size 1.
    pub fn squeeze(&mut self, x: &str, axes: &[i64]) -> String {
        let axes = self.const_i64(axes);
        self.node("Squeeze", &[x, &axes], vec![])
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: &str, axis: i64) -> String {
        self.node("Softmax", &[x], vec![Attr::int("axis", axis)])
    }

    /// `LayerNormalization` over the axes from `axis` on (`-1`: the hidden axis).
    pub fn layer_norm(&mut self, x: &str, scale: &str, bias: &str, eps: f32, axis: i64) -> String {
        self.node(
            "LayerNormalization",
            &[x, scale, bias],
            vec![Attr::float("epsilon", eps), Attr::int("axis", axis)],
        )
    }

    /// Convert element type.
    pub fn cast(&mut self, x: &str, to: ElemType) -> String {
        self.node("Cast", &[x], vec![Attr::int("to", i64::from(to.code()))])
    }

    /// `x[starts:ends]` along `axes`, bounds as constants (`i64::MAX` means to the end).
    pub fn slice(&mut self, x: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let starts = self.const_i64(starts);
        let ends = self.const_i64(ends);
        let axes = self.const_i64(axes);
        self.node("Slice", &[x, &starts, &ends, &axes], vec![])
    }

    /// `Slice` with bounds computed in the graph (1-D int64 values).
    pub fn slice_dyn(&mut self, x: &str, starts: &str, ends: &str, axes: &str) -> String {
        self.node("Slice", &[x, starts, ends, axes], vec![])
    }

    /// Join along `axis`.
    pub fn concat(&mut self, inputs: &[&str], axis: i64) -> String {
        self.node("Concat", inputs, vec![Attr::int("axis", axis)])
    }

    /// Split along `axis` into pieces of `sizes`; returns one value per piece.
    pub fn split(&mut self, x: &str, sizes: &[i64], axis: i64) -> Vec<String> {
        let split = self.const_i64(sizes);
        self.node_multi(
            "Split",
            &[x, &split],
            sizes.len(),
            vec![Attr::int("axis", axis)],
        )
    }

    /// Running sum along `axis` (position ids from an attention mask).
    pub fn cumsum(&mut self, x: &str, axis: i64) -> String {
        let axis = self.scalar_i64(axis);
        self.node("CumSum", &[x, &axis], vec![])
    }

    /// Mean over `axes` (attribute form, opset 17).
    pub fn reduce_mean(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.node(
            "ReduceMean",
            &[x],
            vec![
                Attr::ints("axes", axes.to_vec()),
                Attr::int("keepdims", i64::from(keepdims)),
            ],
        )
    }

    /// Maximum over `axes` (attribute form, opset 17).
    pub fn reduce_max(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.node(
            "ReduceMax",
            &[x],
            vec![
                Attr::ints("axes", axes.to_vec()),
                Attr::int("keepdims", i64::from(keepdims)),
            ],
        )
    }

    /// Sum over `axes` (input form, opset 13+).
    pub fn reduce_sum(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let axes = self.const_i64(axes);
        self.node(
            "ReduceSum",
            &[x, &axes],
            vec![Attr::int("keepdims", i64::from(keepdims))],
        )
    }

    /// `cond ? a : b` (broadcasting).
    pub fn where_(&mut self, cond: &str, a: &str, b: &str) -> String {
        self.node("Where", &[cond, a, b], vec![])
    }

    /// `start, start + delta, ... < limit` from three 0-D values of one type.
    pub fn range(&mut self, start: &str, limit: &str, delta: &str) -> String {
        self.node("Range", &[start, limit, delta], vec![])
    }

    /// Broadcast `x` to `shape` (a 1-D int64 value).
    pub fn expand(&mut self, x: &str, shape: &str) -> String {
        self.node("Expand", &[x, shape], vec![])
    }

    /// Repeat `x` along each axis `repeats` times (a 1-D int64 value).
    pub fn tile(&mut self, x: &str, repeats: &str) -> String {
        self.node("Tile", &[x, repeats], vec![])
    }

    /// An f32 tensor of `shape` (a 1-D int64 value) filled with `value`.
    pub fn constant_of_shape(&mut self, shape: &str, value: f32) -> String {
        let fill = super::builder::raw_tensor(DataType::Float, &[1], value.to_le_bytes().to_vec());
        self.node(
            "ConstantOfShape",
            &[shape],
            vec![Attr::tensor("value", fill)],
        )
    }

    /// Upper (`upper`) or lower triangle of the last two axes, shifted by diagonal `k` (a 0-D
    /// int64 value, or `None` for 0): the causal mask.
    pub fn trilu(&mut self, x: &str, k: Option<&str>, upper: bool) -> String {
        let attrs = vec![Attr::int("upper", i64::from(upper))];
        match k {
            Some(k) => self.node("Trilu", &[x, k], attrs),
            None => self.node("Trilu", &[x], attrs),
        }
    }

    /// `x @ w + b` for a weight already laid out `[in, out]`.
    pub fn linear(&mut self, x: &str, w: &str, b: Option<&str>) -> String {
        let y = self.matmul(x, w);
        match b {
            Some(b) => self.add(&y, b),
            None => y,
        }
    }

    /// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`, as BERT uses.
    pub fn gelu(&mut self, x: &str) -> String {
        let inv_sqrt2 = self.scalar_f32(std::f32::consts::FRAC_1_SQRT_2);
        let half = self.scalar_f32(0.5);
        let one = self.scalar_f32(1.0);
        let scaled = self.mul(x, &inv_sqrt2);
        let erf = self.erf(&scaled);
        let plus_one = self.add(&erf, &one);
        let prod = self.mul(x, &plus_one);
        self.mul(&prod, &half)
    }

    /// Llama's RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`.
    pub fn rms_norm(&mut self, x: &str, weight: &str, eps: f32) -> String {
        let two = self.scalar_f32(2.0);
        let eps = self.scalar_f32(eps);
        let squared = self.pow(x, &two);
        let mean = self.reduce_mean(&squared, &[-1], true);
        let shifted = self.add(&mean, &eps);
        let rms = self.sqrt(&shifted);
        let normed = self.div(x, &rms);
        self.mul(&normed, weight)
    }
}
