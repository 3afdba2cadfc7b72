//! Parameter names, as Hugging Face's `*ForSequenceClassification` models spell them.
//!
//! Our checkpoints and `model.safetensors` use these names, so a file we write loads in
//! transformers, and a file from transformers (with or without the `bert.`-style prefix of
//! the base model) loads here.

use crate::arch::{Arch, Family};

/// Names of one transformer layer's parameters (without `.weight` / `.bias`).
pub struct LayerNames {
    /// Query projection.
    pub query: String,
    /// Key projection.
    pub key: String,
    /// Value projection.
    pub value: String,
    /// Attention output projection.
    pub attn_out: String,
    /// LayerNorm after attention.
    pub attn_norm: String,
    /// Feed-forward up projection.
    pub ffn_in: String,
    /// Feed-forward down projection.
    pub ffn_out: String,
    /// LayerNorm after the feed-forward block.
    pub ffn_norm: String,
}

/// Prefix of the base model's parameters.
pub fn base_prefix(family: Family) -> &'static str {
    match family {
        Family::Bert => "bert.",
        Family::Roberta => "roberta.",
        Family::DistilBert => "distilbert.",
    }
}

/// Embedding tables: (word, position, segment if any, LayerNorm).
pub fn embeddings(arch: &Arch) -> (String, String, Option<String>, String) {
    let p = base_prefix(arch.family);
    (
        format!("{p}embeddings.word_embeddings"),
        format!("{p}embeddings.position_embeddings"),
        (arch.type_vocab_size > 0).then(|| format!("{p}embeddings.token_type_embeddings")),
        format!("{p}embeddings.LayerNorm"),
    )
}

/// Layer `i`.
pub fn layer(family: Family, i: usize) -> LayerNames {
    let p = base_prefix(family);
    match family {
        Family::Bert | Family::Roberta => {
            let l = format!("{p}encoder.layer.{i}");
            LayerNames {
                query: format!("{l}.attention.self.query"),
                key: format!("{l}.attention.self.key"),
                value: format!("{l}.attention.self.value"),
                attn_out: format!("{l}.attention.output.dense"),
                attn_norm: format!("{l}.attention.output.LayerNorm"),
                ffn_in: format!("{l}.intermediate.dense"),
                ffn_out: format!("{l}.output.dense"),
                ffn_norm: format!("{l}.output.LayerNorm"),
            }
        }
        Family::DistilBert => {
            let l = format!("{p}transformer.layer.{i}");
            LayerNames {
                query: format!("{l}.attention.q_lin"),
                key: format!("{l}.attention.k_lin"),
                value: format!("{l}.attention.v_lin"),
                attn_out: format!("{l}.attention.out_lin"),
                attn_norm: format!("{l}.sa_layer_norm"),
                ffn_in: format!("{l}.ffn.lin1"),
                ffn_out: format!("{l}.ffn.lin2"),
                ffn_norm: format!("{l}.output_layer_norm"),
            }
        }
    }
}

/// The classification head: (hidden→hidden dense, hidden→labels output).
pub fn head(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::Bert => ("bert.pooler.dense", "classifier"),
        Family::Roberta => ("classifier.dense", "classifier.out_proj"),
        Family::DistilBert => ("pre_classifier", "classifier"),
    }
}

/// Every parameter with its shape: `(name, shape, part of the head)`.
pub fn parameters(arch: &Arch, num_labels: usize) -> Vec<(String, Vec<usize>, bool)> {
    let h = arch.hidden_size;
    let mut out = Vec::new();
    let linear = |out: &mut Vec<_>, name: &str, o: usize, i: usize, head: bool| {
        out.push((format!("{name}.weight"), vec![o, i], head));
        out.push((format!("{name}.bias"), vec![o], head));
    };
    let norm = |out: &mut Vec<(String, Vec<usize>, bool)>, name: &str| {
        out.push((format!("{name}.weight"), vec![h], false));
        out.push((format!("{name}.bias"), vec![h], false));
    };
    let (word, pos, segment, emb_norm) = embeddings(arch);
    out.push((format!("{word}.weight"), vec![arch.vocab_size, h], false));
    out.push((format!("{pos}.weight"), vec![arch.max_positions, h], false));
    if let Some(segment) = segment {
        out.push((
            format!("{segment}.weight"),
            vec![arch.type_vocab_size, h],
            false,
        ));
    }
    norm(&mut out, &emb_norm);
    for i in 0..arch.num_layers {
        let l = layer(arch.family, i);
        for name in [&l.query, &l.key, &l.value, &l.attn_out] {
            linear(&mut out, name, h, h, false);
        }
        norm(&mut out, &l.attn_norm);
        linear(&mut out, &l.ffn_in, arch.intermediate_size, h, false);
        linear(&mut out, &l.ffn_out, h, arch.intermediate_size, false);
        norm(&mut out, &l.ffn_norm);
    }
    let (dense, output) = head(arch.family);
    linear(&mut out, dense, h, h, true);
    linear(&mut out, output, num_labels, h, true);
    out
}

/// Whether `name` is a norm or bias parameter (no weight decay, initialised to 1 or 0).
pub fn is_norm(name: &str) -> bool {
    name.contains("LayerNorm") || name.contains("layer_norm")
}
