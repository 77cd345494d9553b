//! Graph passes run on the MIL function before planning. Each pass lives in its own file
//! and leaves the function's outputs unchanged (up to floating-point rounding).

pub mod activation;
pub mod attention;
mod common;
pub mod group_norm;
pub mod matmul_attention;
pub mod quick_gelu;

/// Op type of the fused group norm (x, groups, epsilon, gamma?, beta?).
pub const GROUP_NORM_OP: &str = "sdrt_group_norm";
/// Op type of a `conv` followed by an activation (conv's parameters plus `activation`).
pub const CONV_ACT_OP: &str = "sdrt_conv_act";
/// Op type of a `linear` followed by an activation (linear's parameters plus `activation`).
pub const LINEAR_ACT_OP: &str = "sdrt_linear_act";
/// Op type of the fused multi-head attention over (B, C, 1, S) operands (q, k, v, heads, scale).
pub const ATTENTION_OP: &str = "sdrt_attention";
/// Op type of the fused attention of matmul operands [.., positions, features] (q, k, v, scale,
/// and q_t, k_t, v_t, o_t: which of them are stored transposed; see `matmul_attention`).
pub const MATMUL_ATTENTION_OP: &str = "sdrt_matmul_attention";

/// How many patterns each pass fused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fused {
    /// Group norms.
    pub group_norms: usize,
    /// Attention blocks.
    pub attentions: usize,
    /// Quick GELUs (`mul`, `sigmoid`, `mul`) made one `gelu`.
    pub quick_gelus: usize,
    /// Activations folded into their producer.
    pub activations: usize,
}

/// Runs every pass in order; returns how many patterns each fused.
pub fn run_all(f: &mut sd_mil::Function) -> Fused {
    let group_norms = group_norm::fuse_group_norm(f);
    let attentions =
        attention::fuse_split_einsum_attention(f) + matmul_attention::fuse_matmul_attention(f);
    let quick_gelus = quick_gelu::fuse_quick_gelu(f);
    let activations = activation::fuse_activations(f);
    sd_mil::graph::eliminate_dead_code(f);
    Fused {
        group_norms,
        attentions,
        quick_gelus,
        activations,
    }
}
