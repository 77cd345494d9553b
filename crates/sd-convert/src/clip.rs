//! CLIP text encoder (transformers' `CLIPTextModel`): token and position embeddings, causal
//! pre-norm transformer layers, final layer norm; pooled output at the argmax of the ids.

use crate::config::ClipTextConfig;
use crate::error::Result;
use crate::nn::{Net, join};
use sd_mil::signature::text_encoder;
use sd_mil::{DType, Var};

/// The additive causal mask value; −1e4 survives fp16 (the dtype minimum would not).
pub const MASK_VALUE: f32 = -1e4;

/// What the text encoder returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClipOutputs {
    /// `last_hidden_state`, `pooled_outputs` (SD 1.x / 2.x).
    #[default]
    LastHidden,
    /// `hidden_embeds` (penultimate layer, before the final norm), `pooled_outputs` (SDXL form).
    HiddenEmbeds,
    /// All three: `last_hidden_state`, `pooled_outputs`, `hidden_embeds`.
    All,
}

/// Builds the text encoder: input `input_ids` fp32 (1, seq_len).
pub fn build(
    net: &mut Net<'_>,
    cfg: &ClipTextConfig,
    seq_len: usize,
    outputs: ClipOutputs,
) -> Result<Vec<Var>> {
    // transformers ≥ 5 saves CLIPTextModel without the `text_model.` prefix.
    let p = if net
        .w
        .contains("text_model.embeddings.token_embedding.weight")
    {
        "text_model"
    } else {
        ""
    };
    let hidden = cfg.hidden_size;
    let ids = net.input(text_encoder::INPUT_IDS, DType::F32, &[1, seq_len])?;
    let ids_i = net.cast(&ids, "int32", None)?;

    // Embeddings.
    let table = net.weight(
        &join(p, "embeddings.token_embedding.weight"),
        &[cfg.vocab_size, hidden],
    )?;
    let tok = net
        .fb
        .op("gather")
        .input("x", &table)
        .input("indices", &ids_i)
        .param("axis", 0)
        .build_one()?;
    let pos_key = join(p, "embeddings.position_embedding.weight");
    let maxp = cfg.max_position_embeddings;
    if seq_len > maxp {
        return Err(crate::error::ConvertError::Invalid(format!(
            "text sequence length {seq_len} exceeds max_position_embeddings {maxp}"
        )));
    }
    let pos = net.weight_view(&pos_key, &[maxp, hidden], &[1, maxp, hidden])?;
    let pos = if seq_len == maxp {
        pos
    } else {
        net.slice(&pos, &[0, 0, 0], &[1, seq_len, hidden])?
    };
    let mut x = net.add(&tok, &pos)?;

    // Causal mask (1, 1, S, S).
    let mut mask = vec![0f32; seq_len * seq_len];
    for i in 0..seq_len {
        for j in i + 1..seq_len {
            mask[i * seq_len + j] = MASK_VALUE;
        }
    }
    let mask = net.tensor("causal_mask", &[1, 1, seq_len, seq_len], &mask)?;

    let mut penultimate = None;
    for l in 0..cfg.num_hidden_layers {
        let lp = join(p, &format!("encoder.layers.{l}"));
        x = encoder_layer(net, &LayerDims::text(cfg), &lp, &x, Some(&mask))?;
        if l + 2 == cfg.num_hidden_layers {
            penultimate = Some(x.clone());
        }
    }
    let last = net.layer_norm(&x, &join(p, "final_layer_norm"), -1, cfg.layer_norm_eps)?;

    // Pooled: the final state at the end-of-text token, the largest id.
    let eot = net
        .fb
        .op("reduce_argmax")
        .input("x", &ids_i)
        .param("axis", -1)
        .param("keep_dims", false)
        .build_one()?;
    let zname = net.fb.unique_name("batch_index");
    let zero = net.fb.constant(&zname, sd_mil::ConstValue::vec_i32(&[0]))?;
    let idx = net
        .fb
        .op("stack")
        .inputs("values", &[&zero, &eot])
        .param("axis", 1)
        .build_one()?;
    let pooled = net
        .fb
        .op("gather_nd")
        .input("x", &last)
        .input("indices", &idx)
        .build_one()?;

    let mut outs = Vec::new();
    let pen = penultimate.unwrap_or_else(|| x.clone());
    match outputs {
        ClipOutputs::LastHidden => {
            outs.push(net.output(&last, text_encoder::LAST_HIDDEN_STATE)?);
            outs.push(net.output(&pooled, text_encoder::POOLED_OUTPUTS)?);
        }
        ClipOutputs::HiddenEmbeds => {
            outs.push(net.output(&pen, text_encoder::HIDDEN_EMBEDS)?);
            outs.push(net.output(&pooled, text_encoder::POOLED_OUTPUTS)?);
        }
        ClipOutputs::All => {
            outs.push(net.output(&last, text_encoder::LAST_HIDDEN_STATE)?);
            outs.push(net.output(&pooled, text_encoder::POOLED_OUTPUTS)?);
            outs.push(net.output(&pen, text_encoder::HIDDEN_EMBEDS)?);
        }
    }
    Ok(outs)
}

/// The sizes of one CLIP encoder layer, shared by the text and the vision tower.
#[derive(Debug, Clone, Copy)]
pub struct LayerDims {
    /// Width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// `quick_gelu` (x·σ(1.702x)) rather than exact `gelu`.
    pub quick_gelu: bool,
    /// Layer norm epsilon.
    pub eps: f64,
}

impl LayerDims {
    /// The layer sizes of a text encoder.
    pub fn text(cfg: &ClipTextConfig) -> Self {
        LayerDims {
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            quick_gelu: cfg.hidden_act == "quick_gelu",
            eps: cfg.layer_norm_eps,
        }
    }
}

/// One pre-norm CLIP encoder layer `p` on x (1, S, hidden): self-attention (with an additive
/// `mask` when given) and the MLP, each with its residual.
pub fn encoder_layer(
    net: &mut Net<'_>,
    d: &LayerDims,
    p: &str,
    x: &Var,
    mask: Option<&Var>,
) -> Result<Var> {
    let (hidden, heads) = (d.hidden, d.heads);
    let dh = hidden / heads;
    let s = x.ty.shape[1];
    let h = net.layer_norm(x, &join(p, "layer_norm1"), -1, d.eps)?;
    let ap = join(p, "self_attn");
    let q = net.linear(&h, &join(&ap, "q_proj"), hidden, true)?;
    let k = net.linear(&h, &join(&ap, "k_proj"), hidden, true)?;
    let v = net.linear(&h, &join(&ap, "v_proj"), hidden, true)?;
    let q = net.reshape(&q, &[1, s, heads, dh])?;
    let q = net.mul_scalar(&q, (dh as f32).powf(-0.5))?;
    let k = net.reshape(&k, &[1, s, heads, dh])?;
    let v = net.reshape(&v, &[1, s, heads, dh])?;
    let q = net.transpose(&q, &[0, 2, 1, 3])?;
    let k = net.transpose(&k, &[0, 2, 1, 3])?;
    let v = net.transpose(&v, &[0, 2, 1, 3])?;
    let w = net.matmul(&q, &k, false, true)?;
    let w = match mask {
        Some(m) => net.add(&w, m)?,
        None => w,
    };
    let w = net.softmax(&w, -1)?;
    let o = net.matmul(&w, &v, false, false)?;
    let o = net.transpose(&o, &[0, 2, 1, 3])?;
    let o = net.reshape(&o, &[1, s, hidden])?;
    let o = net.linear(&o, &join(&ap, "out_proj"), hidden, true)?;
    let x = net.add(x, &o)?;

    let h = net.layer_norm(&x, &join(p, "layer_norm2"), -1, d.eps)?;
    let h = net.linear(&h, &join(p, "mlp.fc1"), d.intermediate, true)?;
    let h = if d.quick_gelu {
        let t = net.mul_scalar(&h, 1.702)?;
        let t = net.unary("sigmoid", &t)?;
        net.binary("mul", &h, &t)?
    } else {
        net.fb
            .op("gelu")
            .input("x", &h)
            .param("mode", "EXACT")
            .build_one()?
    };
    let h = net.linear(&h, &join(p, "mlp.fc2"), hidden, true)?;
    net.add(&x, &h)
}
