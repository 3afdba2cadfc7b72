//! Graphs built with [`crate::onnx::GraphBuilder`] run through the real ONNX Runtime (found
//! like the plugins find it: `resolve::ort_library` from the workspace root) and compared
//! with the same maths in plain Rust.

use super::*;
use crate::onnx::{self, Dim, ElemType, GraphBuilder, OPSET};
use crate::tokenize::Encoded;
use clarity_sdk::config::Device;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-5;

fn ort() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = crate::resolve::ort_library(&root).unwrap();
    init_ort(&lib).unwrap();
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn batch(seq: usize, ids: &[i64], mask: &[i64], types: &[i64]) -> Encoded {
    Encoded {
        batch: ids.len() / seq,
        seq,
        input_ids: ids.to_vec(),
        attention_mask: mask.to_vec(),
        token_type_ids: types.to_vec(),
    }
}

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "rows: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= tolerance, "{got:?}\n!=\n{want:?}");
        }
    }
}

fn save(model: crate::onnx::proto::ModelProto) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    onnx::save(model, &path).unwrap();
    (dir, path)
}

fn batch_seq() -> [Dim; 2] {
    ["batch".into(), "seq".into()]
}

// ---- model 1: masked mean of embeddings, then a linear layer ----

const VOCAB: usize = 5;
const H1: usize = 3;
const LABELS1: usize = 2;

struct Pooler {
    emb: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Pooler {
    fn new() -> Self {
        Self {
            emb: values(VOCAB * H1, 1),
            w: values(H1 * LABELS1, 2),
            b: values(LABELS1, 3),
        }
    }

    fn graph(&self, f16: bool) -> crate::onnx::proto::ModelProto {
        let mut g = GraphBuilder::new("pooler");
        let ids = g.input("input_ids", ElemType::Int64, &batch_seq());
        let mask = g.input("attention_mask", ElemType::Int64, &batch_seq());
        let emb = if f16 {
            g.weight_f16("emb", &[VOCAB, H1], &self.emb)
        } else {
            g.weight("emb", &[VOCAB, H1], &self.emb)
        };
        let x = g.gather(&emb, &ids, 0);
        let m = g.cast(&mask, ElemType::Float);
        let m = g.unsqueeze(&m, &[-1]);
        let xm = g.mul(&x, &m);
        let sum = g.reduce_sum(&xm, &[1], false);
        let count = g.reduce_sum(&m, &[1], false);
        let pooled = g.div(&sum, &count);
        let w = g.weight("w", &[H1, LABELS1], &self.w);
        let b = g.weight("b", &[LABELS1], &self.b);
        let y = g.linear(&pooled, &w, Some(&b));
        g.output(
            &y,
            "logits",
            ElemType::Float,
            &["batch".into(), (LABELS1 as i64).into()],
        );
        g.finish(OPSET)
    }

    fn reference(&self, e: &Encoded, f16: bool) -> Vec<Vec<f32>> {
        let emb: Vec<f32> = if f16 {
            self.emb
                .iter()
                .map(|&x| half::f16::from_f32(x).to_f32())
                .collect()
        } else {
            self.emb.clone()
        };
        (0..e.batch)
            .map(|r| {
                let mut pooled = [0f32; H1];
                let mut count = 0f32;
                for t in 0..e.seq {
                    let m = e.attention_mask[r * e.seq + t] as f32;
                    let id = e.input_ids[r * e.seq + t] as usize;
                    for h in 0..H1 {
                        pooled[h] += emb[id * H1 + h] * m;
                    }
                    count += m;
                }
                (0..LABELS1)
                    .map(|c| {
                        self.b[c]
                            + (0..H1)
                                .map(|h| pooled[h] / count * self.w[h * LABELS1 + c])
                                .sum::<f32>()
                    })
                    .collect()
            })
            .collect()
    }
}

fn pooler_batches() -> [Encoded; 2] {
    [
        batch(4, &[1, 2, 3, 4], &[1, 1, 1, 1], &[0; 4]),
        batch(2, &[0, 4, 3, 0, 2, 2], &[1, 1, 1, 0, 1, 1], &[0; 6]),
    ]
}

#[test]
fn a_pooling_classifier_matches_rust_with_dynamic_batch_and_seq() {
    ort();
    let model = Pooler::new();
    let (_dir, path) = save(model.graph(false));
    let clf = OrtClassifier::load(&path, Device::Auto, Some(1)).unwrap();
    if !cfg!(any(feature = "cuda-serving", feature = "coreml")) {
        assert_eq!(clf.provider(), "cpu");
    }
    assert_eq!(clf.num_labels(), Some(LABELS1));
    assert!(!clf.wants_token_type_ids());
    for e in pooler_batches() {
        let logits = clf.logits(&e).unwrap();
        assert_close(&logits, &model.reference(&e, false), TOLERANCE);
        let probs = clf.classify(&e).unwrap();
        for (p, l) in probs.iter().zip(&logits) {
            assert_close(std::slice::from_ref(p), &[softmax(l)], 1e-6);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn f16_weights_cost_only_their_rounding() {
    ort();
    let model = Pooler::new();
    let (_dir, path) = save(model.graph(true));
    let clf = OrtClassifier::load(&path, Device::Cpu, None).unwrap();
    for e in pooler_batches() {
        assert_close(
            &clf.logits(&e).unwrap(),
            &model.reference(&e, true),
            TOLERANCE,
        );
    }
}

#[test]
fn external_data_loads_and_gives_the_same_logits() {
    ort();
    let model = Pooler::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.onnx");
    let layout = onnx::Layout {
        external_above: 0,
        min_tensor_bytes: 0,
    };
    onnx::save_with(model.graph(false), &path, layout).unwrap();
    assert!(dir.path().join("big.onnx.data").is_file());
    let clf = OrtClassifier::load(&path, Device::Auto, None).unwrap();
    for e in pooler_batches() {
        assert_close(
            &clf.logits(&e).unwrap(),
            &model.reference(&e, false),
            TOLERANCE,
        );
    }
}

// ---- model 2: one BERT-style attention layer ----

const V2: usize = 6;
const H2: usize = 4;
const HEADS: usize = 2;
const HD: usize = H2 / HEADS;
const LABELS2: usize = 3;
const EPS: f32 = 1e-5;

struct Encoder {
    word: Vec<f32>,
    types: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wc: Vec<f32>,
    bc: Vec<f32>,
}

/// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), in f64.
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

fn matvec(x: &[f32], w: &[f32], out: usize) -> Vec<f32> {
    (0..out)
        .map(|o| x.iter().enumerate().map(|(i, v)| v * w[i * out + o]).sum())
        .collect()
}

impl Encoder {
    fn new() -> Self {
        let gamma = values(H2, 13).iter().map(|v| 1.0 + 0.5 * v).collect();
        Self {
            word: values(V2 * H2, 11),
            types: values(2 * H2, 12),
            gamma,
            beta: values(H2, 14),
            wq: values(H2 * H2, 15),
            wk: values(H2 * H2, 16),
            wv: values(H2 * H2, 17),
            wc: values(H2 * LABELS2, 18),
            bc: values(LABELS2, 19),
        }
    }

    fn graph(&self) -> crate::onnx::proto::ModelProto {
        let mut g = GraphBuilder::new("encoder");
        let ids = g.input("input_ids", ElemType::Int64, &batch_seq());
        let mask = g.input("attention_mask", ElemType::Int64, &batch_seq());
        let tt = g.input("token_type_ids", ElemType::Int64, &batch_seq());
        let word = g.weight("word", &[V2, H2], &self.word);
        let types = g.weight("types", &[2, H2], &self.types);
        let we = g.gather(&word, &ids, 0);
        let te = g.gather(&types, &tt, 0);
        let x = g.add(&we, &te);
        let gamma = g.weight("gamma", &[H2], &self.gamma);
        let beta = g.weight("beta", &[H2], &self.beta);
        let ln = g.layer_norm(&x, &gamma, &beta, EPS, -1);

        let heads = |g: &mut GraphBuilder, w: &[f32], name: &str| {
            let w = g.weight(name, &[H2, H2], w);
            let y = g.matmul(&ln, &w);
            let y = g.reshape(&y, &[0, 0, HEADS as i64, HD as i64]);
            g.transpose(&y, &[0, 2, 1, 3])
        };
        let q = heads(&mut g, &self.wq, "wq");
        let k = heads(&mut g, &self.wk, "wk");
        let v = heads(&mut g, &self.wv, "wv");
        let kt = g.transpose(&k, &[0, 1, 3, 2]);
        let scores = g.matmul(&q, &kt);
        let scale = g.scalar_f32(1.0 / (HD as f32).sqrt());
        let scores = g.mul(&scores, &scale);
        let m = g.cast(&mask, ElemType::Float);
        let one = g.scalar_f32(1.0);
        let inv = g.sub(&one, &m);
        let big = g.scalar_f32(-10000.0);
        let bias = g.mul(&inv, &big);
        let bias = g.unsqueeze(&bias, &[1, 2]);
        let scores = g.add(&scores, &bias);
        let probs = g.softmax(&scores, -1);
        let ctx = g.matmul(&probs, &v);
        let ctx = g.transpose(&ctx, &[0, 2, 1, 3]);
        let ctx = g.reshape(&ctx, &[0, 0, H2 as i64]);
        let h = g.gelu(&ctx);
        let first = g.scalar_i64(0);
        let cls = g.gather(&h, &first, 1);
        let wc = g.weight("wc", &[H2, LABELS2], &self.wc);
        let bc = g.weight("bc", &[LABELS2], &self.bc);
        let y = g.linear(&cls, &wc, Some(&bc));
        g.output(
            &y,
            "logits",
            ElemType::Float,
            &["batch".into(), Dim::Fixed(3)],
        );
        g.finish(OPSET)
    }

    fn reference(&self, e: &Encoded) -> Vec<Vec<f32>> {
        (0..e.batch)
            .map(|r| {
                let at = |t: usize| r * e.seq + t;
                let ln: Vec<Vec<f32>> = (0..e.seq)
                    .map(|t| {
                        let (id, ty) = (
                            e.input_ids[at(t)] as usize,
                            e.token_type_ids[at(t)] as usize,
                        );
                        let x: Vec<f32> = (0..H2)
                            .map(|h| self.word[id * H2 + h] + self.types[ty * H2 + h])
                            .collect();
                        let mean = x.iter().sum::<f32>() / H2 as f32;
                        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / H2 as f32;
                        (0..H2)
                            .map(|h| {
                                (x[h] - mean) / (var + EPS).sqrt() * self.gamma[h] + self.beta[h]
                            })
                            .collect()
                    })
                    .collect();
                let q: Vec<Vec<f32>> = ln.iter().map(|x| matvec(x, &self.wq, H2)).collect();
                let k: Vec<Vec<f32>> = ln.iter().map(|x| matvec(x, &self.wk, H2)).collect();
                let v: Vec<Vec<f32>> = ln.iter().map(|x| matvec(x, &self.wv, H2)).collect();
                // Only position 0 feeds the classifier.
                let mut ctx = [0f32; H2];
                for head in 0..HEADS {
                    let dims = head * HD..(head + 1) * HD;
                    let scores: Vec<f32> = (0..e.seq)
                        .map(|j| {
                            let dot: f32 = dims.clone().map(|d| q[0][d] * k[j][d]).sum();
                            dot / (HD as f32).sqrt()
                                + (1.0 - e.attention_mask[at(j)] as f32) * -10000.0
                        })
                        .collect();
                    let p = softmax(&scores);
                    for d in dims {
                        ctx[d] = (0..e.seq).map(|j| p[j] * v[j][d]).sum();
                    }
                }
                let h: Vec<f32> = ctx
                    .iter()
                    .map(|&x| 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)))
                    .collect();
                matvec(&h, &self.wc, LABELS2)
                    .iter()
                    .zip(&self.bc)
                    .map(|(y, b)| y + b)
                    .collect()
            })
            .collect()
    }
}

#[test]
fn an_attention_layer_with_layer_norm_softmax_and_gelu_matches_rust() {
    ort();
    let model = Encoder::new();
    let (_dir, path) = save(model.graph());
    let clf = OrtClassifier::load(&path, Device::Auto, None).unwrap();
    assert!(clf.wants_token_type_ids());
    assert_eq!(clf.num_labels(), Some(LABELS2));
    let batches = [
        batch(3, &[1, 5, 2], &[1, 1, 1], &[0, 0, 1]),
        batch(
            5,
            &[1, 2, 3, 4, 0, 1, 5, 0, 0, 0, 3, 3, 4, 2, 1],
            &[1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1],
            &[0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1],
        ),
    ];
    for e in batches {
        assert_close(&clf.logits(&e).unwrap(), &model.reference(&e), TOLERANCE);
    }
}

// ---- the decoder helpers, checked op by op ----

#[test]
fn decoder_helpers_run_in_onnx_runtime() {
    use ort::session::Session;
    use ort::value::TensorRef;
    ort();
    let x: Vec<f32> = vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
    let norm_w = [1.0f32, 0.5, 2.0];
    let mut g = GraphBuilder::new("helpers");
    let xi = g.input("x", ElemType::Float, &[2.into(), "n".into()]);
    let mut outputs: Vec<(&str, Vec<f32>)> = Vec::new();
    // Output axes are symbolic (the checker needs a rank); the values are what is checked.
    let mut out =
        |g: &mut GraphBuilder, value: &str, name: &'static str, rank: usize, want: Vec<f32>| {
            let dims: Vec<Dim> = (0..rank)
                .map(|i| Dim::Symbolic(format!("{name}_{i}")))
                .collect();
            g.output(value, name, ElemType::Float, &dims);
            outputs.push((name, want));
        };
    let rows = |f: &dyn Fn(&[f32]) -> Vec<f32>| -> Vec<f32> { x.chunks(3).flat_map(f).collect() };

    let w = g.weight("norm", &[3], &norm_w);
    let rms = g.rms_norm(&xi, &w, 1e-5);
    out(
        &mut g,
        &rms,
        "rms",
        2,
        rows(&|r| {
            let ms = r.iter().map(|v| v * v).sum::<f32>() / 3.0;
            r.iter()
                .zip(norm_w)
                .map(|(v, w)| v / (ms + 1e-5).sqrt() * w)
                .collect()
        }),
    );

    let s = g.sigmoid(&xi);
    let t = g.tanh(&xi);
    let r = g.relu(&xi);
    let st = g.add(&s, &t);
    let str_ = g.add(&st, &r);
    out(
        &mut g,
        &str_,
        "act",
        2,
        x.iter()
            .map(|v| 1.0 / (1.0 + (-v).exp()) + v.tanh() + v.max(0.0))
            .collect(),
    );

    let c = g.cumsum(&xi, 1);
    out(
        &mut g,
        &c,
        "cumsum",
        2,
        rows(&|r| vec![r[0], r[0] + r[1], r[0] + r[1] + r[2]]),
    );

    let sl = g.slice(&xi, &[1], &[i64::MAX], &[1]);
    out(&mut g, &sl, "slice", 2, rows(&|r| r[1..].to_vec()));

    let parts = g.split(&xi, &[1, 2], 1);
    let cat = g.concat(&[&parts[1], &parts[0]], 1);
    out(
        &mut g,
        &cat,
        "split_concat",
        2,
        rows(&|r| vec![r[1], r[2], r[0]]),
    );

    let u = g.unsqueeze(&xi, &[0]);
    let sq = g.squeeze(&u, &[0]);
    let re = g.reshape(&sq, &[3, 2]);
    let tr = g.transpose(&re, &[1, 0]);
    out(
        &mut g,
        &tr,
        "reshape_transpose",
        2,
        vec![x[0], x[2], x[4], x[1], x[3], x[5]],
    );

    // Causal mask from the dynamic length: positions j > i get -1e4.
    let shape = g.shape(&xi);
    let one_i = g.scalar_i64(1);
    let n = g.gather(&shape, &one_i, 0);
    let zero_i = g.scalar_i64(0);
    let pos = g.range(&zero_i, &n, &one_i);
    let row = g.unsqueeze(&pos, &[1]);
    let col = g.unsqueeze(&pos, &[0]);
    let future = g.less(&row, &col);
    let neg = g.scalar_f32(-1e4);
    let zero = g.scalar_f32(0.0);
    let causal = g.where_(&future, &neg, &zero);
    out(
        &mut g,
        &causal,
        "causal",
        2,
        vec![0.0, -1e4, -1e4, 0.0, 0.0, -1e4, 0.0, 0.0, 0.0],
    );

    let n1 = g.unsqueeze(&n, &[0]);
    let nn = g.concat(&[&n1, &n1], 0);
    let ones = g.constant_of_shape(&nn, 1.0);
    let lower = g.trilu(&ones, None, false);
    out(
        &mut g,
        &lower,
        "trilu",
        2,
        vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
    );

    let cs = g.cos(&xi);
    let sn = g.sin(&xi);
    let rot = g.sub(&cs, &sn);
    out(
        &mut g,
        &rot,
        "rotary",
        2,
        x.iter().map(|v| v.cos() - v.sin()).collect(),
    );

    let two = g.scalar_f32(2.0);
    let p = g.pow(&xi, &two);
    let one = g.scalar_f32(1.0);
    let p1 = g.add(&p, &one);
    let sq = g.sqrt(&p1);
    let l = g.log(&sq);
    let e = g.exp(&l);
    let rc = g.reciprocal(&e);
    let ng = g.neg(&rc);
    out(
        &mut g,
        &ng,
        "unary",
        2,
        x.iter().map(|v| -1.0 / (v * v + 1.0).sqrt()).collect(),
    );

    let mx = g.reduce_max(&xi, &[1], false);
    let sm = g.reduce_sum(&xi, &[1], false);
    let mean = g.reduce_mean(&xi, &[1], false);
    let both = g.concat(&[&mx, &sm, &mean], 0);
    out(
        &mut g,
        &both,
        "reduce",
        1,
        vec![2.0, 1.5, 1.5, 1.0, 0.5, 1.0 / 3.0],
    );

    let soft = g.softmax(&xi, 1);
    out(&mut g, &soft, "softmax", 2, rows(&softmax));

    let half_ = g.scalar_f32(0.3);
    let big = g.greater(&xi, &half_);
    let small = g.less(&xi, &zero);
    let not_small = g.not(&small);
    let mid = g.and(&big, &not_small);
    let either = g.or(&mid, &small);
    let pick = g.where_(&either, &xi, &zero);
    out(
        &mut g,
        &pick,
        "logic",
        2,
        x.iter()
            .map(|&v| if (0.0..=0.3).contains(&v) { 0.0 } else { v })
            .collect(),
    );

    let cl = g.max(&xi, &zero);
    let cl = g.min(&cl, &one);
    out(
        &mut g,
        &cl,
        "clamp",
        2,
        x.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
    );

    let rep = g.const_i64(&[1, 2]);
    let tiled = g.tile(&xi, &rep);
    out(&mut g, &tiled, "tile", 2, rows(&|r| [r, r].concat()));

    let target = g.const_i64(&[2, 2, 3]);
    let ex = g.expand(&xi, &target);
    out(&mut g, &ex, "expand", 3, [x.clone(), x.clone()].concat());

    let dims = g.cast(&shape, ElemType::Float);
    let eq = g.equal(&shape, &shape);
    let eqf = g.cast(&eq, ElemType::Float);
    let dims = g.mul(&dims, &eqf);
    out(&mut g, &dims, "cast", 1, vec![2.0, 3.0]);

    let path_dir = tempfile::tempdir().unwrap();
    let path = path_dir.path().join("helpers.onnx");
    onnx::save(g.finish(OPSET), &path).unwrap();

    let env = runtime::environment().unwrap();
    let mut session = Session::builder(env)
        .unwrap()
        .commit_from_file(&path)
        .unwrap();
    let input = TensorRef::from_array_view(([2usize, 3], x.as_slice())).unwrap();
    let result = session.run(ort::inputs!["x" => input]).unwrap();
    for (name, want) in outputs {
        let (_, got) = result[name].try_extract_tensor::<f32>().unwrap();
        assert_close(&[got.to_vec()], &[want], 1e-5);
    }
}

// ---- what loading refuses ----

fn graph_with_inputs(
    inputs: &[(&str, ElemType)],
    out_dims: &[Dim],
) -> crate::onnx::proto::ModelProto {
    let mut g = GraphBuilder::new("inputs");
    let mut first = String::new();
    for (name, elem) in inputs {
        let v = g.input(name, *elem, &batch_seq());
        if first.is_empty() {
            first = v;
        }
    }
    let f = g.cast(&first, ElemType::Float);
    g.output(&f, "logits", ElemType::Float, out_dims);
    g.finish(OPSET)
}

#[test]
fn an_input_clarity_cannot_feed_is_a_load_error_naming_it() {
    ort();
    let model = graph_with_inputs(
        &[
            ("input_ids", ElemType::Int64),
            ("pixel_values", ElemType::Int64),
        ],
        &batch_seq(),
    );
    let (_dir, path) = save(model);
    let err = OrtClassifier::load(&path, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pixel_values"), "{err}");
    assert!(err.contains("model.onnx"), "{err}");
}

#[test]
fn wrong_input_types_and_output_shapes_are_load_errors() {
    ort();
    let float_ids = graph_with_inputs(&[("input_ids", ElemType::Float)], &batch_seq());
    let (_d1, path) = save(float_ids);
    let err = OrtClassifier::load(&path, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int64"), "{err}");

    let no_ids = graph_with_inputs(&[("attention_mask", ElemType::Int64)], &batch_seq());
    let (_d2, path) = save(no_ids);
    let err = OrtClassifier::load(&path, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input_ids"), "{err}");

    let mut g = GraphBuilder::new("rank3");
    let ids = g.input("input_ids", ElemType::Int64, &batch_seq());
    let f = g.cast(&ids, ElemType::Float);
    let f = g.unsqueeze(&f, &[2]);
    g.output(
        &f,
        "logits",
        ElemType::Float,
        &["batch".into(), "seq".into(), 1.into()],
    );
    let (_d3, path) = save(g.finish(OPSET));
    let err = OrtClassifier::load(&path, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[batch, num_labels]"), "{err}");
}

#[test]
fn a_missing_or_broken_model_file_is_an_error_naming_it() {
    ort();
    let err = OrtClassifier::load(Path::new("/nonexistent/model.onnx"), Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = OrtClassifier::load(&junk, Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk.onnx"), "{err}");
}

#[test]
fn a_fixed_accelerator_is_used_or_an_error_never_a_silent_cpu_run() {
    ort();
    let (_dir, path) = save(Pooler::new().graph(false));
    let cases = [
        (Device::Cuda, "cuda", cfg!(feature = "cuda-serving")),
        (Device::Coreml, "coreml", cfg!(feature = "coreml")),
    ];
    for (device, name, built) in cases {
        match OrtClassifier::load(&path, device, None) {
            Ok(clf) => assert_eq!(clf.provider(), name),
            Err(err) => {
                let err = err.to_string();
                assert!(err.contains(name), "{err}");
                if !built {
                    assert!(err.contains(&format!("--features {name}")), "{err}");
                }
            }
        }
    }
}

#[test]
fn a_batch_inconsistent_with_its_shape_is_refused() {
    ort();
    let (_dir, path) = save(Pooler::new().graph(false));
    let clf = OrtClassifier::load(&path, Device::Cpu, Some(1)).unwrap();
    let mut e = batch(2, &[1, 2, 3, 4], &[1, 1, 1, 1], &[0; 4]);
    e.attention_mask.pop();
    let err = clf.logits(&e).unwrap_err().to_string();
    assert!(err.contains("attention_mask"), "{err}");
    // token_type_ids are not fed to this graph, so their length does not matter.
    let e = batch(2, &[1, 2, 3, 4], &[1, 1, 1, 1], &[]);
    assert_eq!(clf.logits(&e).unwrap().len(), 2);
    let empty = batch(1, &[], &[], &[]);
    assert!(clf.classify(&empty).unwrap().is_empty());
}

#[test]
fn the_library_loads_once_and_bad_paths_are_named() {
    ort();
    // The same library again is fine.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    init_ort(&crate::resolve::ort_library(&root).unwrap()).unwrap();
    assert!(ort_library_in_use().is_some());

    let err = init_ort(Path::new("/nonexistent/libonnxruntime.so.1.31.1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{err}"
    );
    assert!(err.contains("ORT_DYLIB_PATH"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so.9.9.9");
    std::fs::write(&fake, b"not a library").unwrap();
    let err = init_ort(&fake).unwrap_err().to_string();
    assert!(err.contains("libonnxruntime.so.9.9.9"), "{err}");
}

#[test]
fn softmax_is_stable_and_sums_to_one() {
    let p = softmax(&[1000.0, 1001.0, 999.0]);
    assert!(p.iter().all(|v| v.is_finite()));
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(p[1] > p[0] && p[0] > p[2]);
    assert_eq!(OrtClassifier::softmax(&[0.0, 0.0]), vec![0.5, 0.5]);
    assert!(softmax(&[]).is_empty());
}

#[test]
fn a_classifier_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<OrtClassifier>();
}

// ---- OnnxServing: the serving half the plugins share ----

/// A tokenizer stand-in: one fixed batch, or a refusal.
#[derive(Debug)]
struct Fixed(Option<Encoded>);

impl crate::tokenize::EncodePairs for Fixed {
    fn encode(&self, _: &[(&str, &str)]) -> Result<Encoded, crate::tokenize::TokenizeError> {
        self.0
            .clone()
            .ok_or_else(|| crate::tokenize::TokenizeError::Encode("refused".into()))
    }

    fn token_counts(
        &self,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<usize>, crate::tokenize::TokenizeError> {
        let e = self
            .0
            .as_ref()
            .ok_or_else(|| crate::tokenize::TokenizeError::Encode("refused".into()))?;
        Ok((0..pairs.len()).map(|i| e.length(i % e.batch)).collect())
    }
}

/// A tokenizer stand-in: one token per word of question and context (ids cycle through the
/// pooler's vocabulary), cut at `.0` tokens, right-padded.
#[derive(Debug)]
struct Words(usize);

impl Words {
    fn ids(q: &str, c: &str) -> Vec<i64> {
        q.split_whitespace()
            .chain(c.split_whitespace())
            .enumerate()
            .map(|(i, w)| ((i + w.len()) % (VOCAB - 1) + 1) as i64)
            .collect()
    }
}

impl crate::tokenize::EncodePairs for Words {
    fn encode(&self, pairs: &[(&str, &str)]) -> Result<Encoded, crate::tokenize::TokenizeError> {
        let rows: Vec<Vec<i64>> = pairs
            .iter()
            .map(|(q, c)| Self::ids(q, c).into_iter().take(self.0).collect())
            .collect();
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut e = Encoded {
            batch: rows.len(),
            seq,
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            token_type_ids: vec![0; rows.len() * seq],
        };
        for row in rows {
            e.attention_mask.extend(row.iter().map(|_| 1));
            e.attention_mask
                .extend(std::iter::repeat_n(0, seq - row.len()));
            e.input_ids.extend(row.iter().copied());
            e.input_ids.extend(std::iter::repeat_n(0, seq - row.len()));
        }
        Ok(e)
    }

    fn token_counts(
        &self,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<usize>, crate::tokenize::TokenizeError> {
        Ok(pairs.iter().map(|(q, c)| Self::ids(q, c).len()).collect())
    }
}

#[test]
fn a_batch_over_the_token_budget_runs_in_parts_with_the_same_scores() {
    let (dir, model) = pooler_folder();
    let cut_at = 6;
    let texts = [
        "a",
        "b c d e f g h i",
        "j k",
        "l m n o p",
        "q r s t u v w",
        "x",
    ];
    let pairs: Vec<clarity_sdk::TextPair> = texts
        .iter()
        .map(|c| clarity_sdk::TextPair::new("why", *c))
        .collect();
    let serve_with = |budget: usize| {
        let mut init = plugin_init(dir.path(), serde_json::json!({"device": "cpu"}));
        init.spec.serving_config.max_batch_tokens = Some(budget);
        let folder = ServedFolder {
            dir: dir.path().to_path_buf(),
            tokenizer: Words(cut_at),
            labels: vec!["a".into(), "b".into()],
            max_length: cut_at,
            artifacts: vec![],
            details: Default::default(),
        };
        OnnxServing::start(&init, folder).unwrap()
    };
    let whole = serve_with(16_384).classify_batch(&pairs).unwrap();
    // 6 pairs of up to 6 tokens: 36 padded tokens, so a budget of 12 forces several runs.
    let parts = serve_with(12).classify_batch(&pairs).unwrap();
    assert_close(&parts, &whole, 1e-6);
    // And both are what each pair alone scores: padding and grouping change nothing.
    let pairs_ref: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
    for (i, pair) in pairs_ref.iter().enumerate() {
        let alone = crate::tokenize::EncodePairs::encode(&Words(cut_at), &[*pair]).unwrap();
        let want: Vec<Vec<f32>> = model
            .reference(&alone, false)
            .iter()
            .map(|r| softmax(r))
            .collect();
        assert_close(&parts[i..=i], &want, 1e-5);
    }
    assert_eq!(
        serve_with(12).token_counts(&pairs).unwrap(),
        [2, 9, 3, 6, 8, 2],
        "untruncated lengths, question word included"
    );
    assert_eq!(serve_with(12).info("t").details["max_batch_tokens"], 12);
}

#[test]
fn an_unset_token_budget_follows_the_device_and_fits_one_pair() {
    assert_eq!(default_batch_tokens("cpu", 128), 512);
    assert_eq!(default_batch_tokens("cpu", 1024), 1024);
    assert_eq!(default_batch_tokens("cuda", 128), 16_384);
    assert_eq!(default_batch_tokens("coreml", 256), 16_384);
    // Served on the CPU with nothing set, the model reports the CPU budget.
    let (dir, _) = pooler_folder();
    let init = plugin_init(dir.path(), serde_json::json!({"device": "cpu"}));
    let [e, _] = pooler_batches();
    let serving =
        OnnxServing::start(&init, folder(dir.path(), Fixed(Some(e)), &["a", "b"])).unwrap();
    assert_eq!(serving.info("t").details["max_batch_tokens"], 512);
}

#[test]
fn token_budget_runs_group_by_length_within_the_budget() {
    // Every row lands in exactly one run, and each run's padded size fits the budget
    // (a row longer than the budget runs alone).
    let lengths = [5, 1, 9, 3, 3, 7, 2, 40];
    for budget in [1, 8, 10, 16, 64, 1000] {
        let runs = token_budget_runs(&lengths, budget);
        let mut seen: Vec<usize> = runs.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..lengths.len()).collect::<Vec<_>>(),
            "budget {budget}"
        );
        for run in &runs {
            let width = run.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(
                run.len() == 1 || run.len() * width <= budget,
                "{run:?} over {budget}"
            );
        }
    }
    assert_eq!(token_budget_runs(&lengths, 1000).len(), 1);
    assert_eq!(token_budget_runs(&lengths, 1).len(), lengths.len());
    // Longest first: 40 alone, then 9 and 7 (2 x 9 = 18 <= 20), then 5, 3, 3 and 2
    // (4 x 5 = 20), then 1.
    assert_eq!(
        token_budget_runs(&lengths, 20),
        [vec![7], vec![2, 5], vec![0, 3, 4, 6], vec![1]]
    );
    assert!(token_budget_runs(&[], 10).is_empty());
}

#[test]
fn selecting_rows_repacks_them_to_their_own_longest() {
    let e = batch(
        4,
        &[1, 2, 3, 4, 1, 2, 0, 0, 3, 0, 0, 0],
        &[1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0],
        &[0; 12],
    );
    let picked = e.select(&[2, 1]);
    assert_eq!((picked.batch, picked.seq), (2, 2));
    assert_eq!(picked.input_ids, [3, 0, 1, 2]);
    assert_eq!(picked.attention_mask, [1, 0, 1, 1]);
    assert_eq!(picked.token_type_ids, [0; 4]);
}

/// A `models.yaml` entry for a model served from `dir`, finding ONNX Runtime like the
/// plugins do (from the workspace root).
fn plugin_init(dir: &Path, model_config: serde_json::Value) -> clarity_sdk::PluginInit {
    let spec = serde_json::from_value(serde_json::json!({
        "name": "pooler",
        "type": "encoder",
        "model_config": model_config,
        "label_config": {"labels": ["a", "b"]},
    }))
    .unwrap();
    clarity_sdk::PluginInit {
        spec,
        config_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        artifact_dir: dir.to_path_buf(),
        serving_threads: None,
    }
}

fn folder(dir: &Path, tokenizer: Fixed, labels: &[&str]) -> ServedFolder<Fixed> {
    ServedFolder {
        dir: dir.to_path_buf(),
        tokenizer,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        max_length: 4,
        artifacts: vec!["model.onnx".into()],
        details: [("source".to_string(), "test".into())].into(),
    }
}

/// A folder holding the pooler graph as `model.onnx`.
fn pooler_folder() -> (tempfile::TempDir, Pooler) {
    let dir = tempfile::tempdir().unwrap();
    let model = Pooler::new();
    onnx::save(model.graph(false), &dir.path().join("model.onnx")).unwrap();
    (dir, model)
}

#[test]
fn onnx_serving_classifies_and_describes_itself() {
    let (dir, model) = pooler_folder();
    let init = plugin_init(
        dir.path(),
        serde_json::json!({"device": "cpu", "options": {"threads": 1}}),
    );
    let [e, _] = pooler_batches();
    let serving = OnnxServing::start(
        &init,
        folder(dir.path(), Fixed(Some(e.clone())), &["a", "b"]),
    )
    .unwrap();
    let pairs = [clarity_sdk::TextPair::new("q", "c")];
    let probs = serving.classify_batch(&pairs).unwrap();
    let want: Vec<Vec<f32>> = model
        .reference(&e, false)
        .iter()
        .map(|r| softmax(r))
        .collect();
    assert_close(&probs, &want, 1e-5);

    let info = serving.info("test-onnx");
    assert_eq!(info.backend, "test-onnx");
    assert!(info.loaded);
    assert_eq!(info.device, "cpu");
    assert_eq!(info.labels, ["a", "b"]);
    assert_eq!(info.max_length, Some(4));
    assert_eq!(info.artifact_dir.as_deref(), Some(dir.path()));
    assert_eq!(info.artifacts, ["model.onnx"]);
    assert_eq!(info.details["runtime"], "onnxruntime");
    assert_eq!(info.details["execution_provider"], "cpu");
    assert_eq!(info.details["source"], "test");
    assert_eq!(serving.dir(), dir.path());
}

#[test]
fn a_refused_input_is_invalid_input_and_a_wrong_label_count_is_config() {
    use clarity_sdk::ErrorKind;
    let (dir, _) = pooler_folder();
    let init = plugin_init(dir.path(), serde_json::json!({"device": "cpu"}));
    let serving = OnnxServing::start(&init, folder(dir.path(), Fixed(None), &["a", "b"])).unwrap();
    let err = serving
        .classify_batch(&[clarity_sdk::TextPair::new("q", "c")])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("refused"), "{err}");

    let err =
        OnnxServing::start(&init, folder(dir.path(), Fixed(None), &["a", "b", "c"])).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidConfig, "{err}");
    assert!(err.message.contains("scores 2 labels but 3"), "{err}");

    let bad_threads = plugin_init(
        dir.path(),
        serde_json::json!({"options": {"threads": "all"}}),
    );
    let err =
        OnnxServing::start(&bad_threads, folder(dir.path(), Fixed(None), &["a", "b"])).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidConfig, "{err}");
    assert!(err.message.contains("options.threads"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err =
        OnnxServing::start(&init, folder(empty.path(), Fixed(None), &["a", "b"])).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Other, "{err}");
    assert!(err.message.contains("model.onnx"), "{err}");
}

#[test]
fn before_load_info_is_idle_classify_is_not_loaded_and_load_says_train() {
    use clarity_sdk::ErrorKind;
    let dir = tempfile::tempdir().unwrap();
    let init = plugin_init(dir.path(), serde_json::json!({}));
    let info = idle_info("test-onnx", &init);
    assert!(!info.loaded);
    assert_eq!(info.labels, ["a", "b"]);
    assert_eq!(info.max_length, Some(spec::DEFAULT_MAX_LENGTH));
    assert_eq!(info.artifact_dir.as_deref(), Some(dir.path()));
    let configured = plugin_init(dir.path(), serde_json::json!({"max_length": 64}));
    assert_eq!(idle_info("test-onnx", &configured).max_length, Some(64));

    let none: Option<OnnxServing<Fixed>> = None;
    assert_eq!(loaded(&none).unwrap_err().kind, ErrorKind::NotLoaded);

    let err = not_trained(&init);
    assert_eq!(err.kind, ErrorKind::NotTrained);
    assert_eq!(
        err.message,
        format!(
            "no trained model at {} (run `clarity-host train --model pooler`)",
            dir.path().display()
        )
    );
}

#[test]
fn spec_settings_are_read_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let init = plugin_init(
        dir.path(),
        serde_json::json!({"model_name": "m", "device": "cpu", "options": {"threads": 3}}),
    );
    assert_eq!(spec::model_name(&init, "needed").unwrap(), "m");
    assert_eq!(spec::device(&init), Device::Cpu);
    assert_eq!(spec::threads(&init).unwrap(), Some(3));
    let bare = plugin_init(dir.path(), serde_json::json!({}));
    let err = spec::model_name(&bare, "model_name is needed here").unwrap_err();
    assert_eq!(err.kind, clarity_sdk::ErrorKind::InvalidConfig);
    assert_eq!(err.message, "model_name is needed here");
    assert_eq!(spec::threads(&bare).unwrap(), None);
    for bad in [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!("2"),
    ] {
        let init = plugin_init(dir.path(), serde_json::json!({"options": {"threads": bad}}));
        assert!(spec::threads(&init).is_err(), "{bad}");
    }
}
