//! Graph passes run on the MIL function before planning. Each pass lives in its own file
//! and leaves the function's outputs unchanged (up to floating-point rounding).

pub mod attention;
mod common;
pub mod group_norm;

/// Op type of the fused group norm (x, groups, epsilon, gamma?, beta?).
pub const GROUP_NORM_OP: &str = "sdrt_group_norm";
/// Op type of the fused multi-head attention over (B, C, 1, S) operands (q, k, v, heads, scale).
pub const ATTENTION_OP: &str = "sdrt_attention";

/// Runs every pass in order; returns how many patterns each fused.
pub fn run_all(f: &mut sd_mil::Function) -> (usize, usize) {
    let g = group_norm::fuse_group_norm(f);
    let a = attention::fuse_split_einsum_attention(f);
    sd_mil::graph::eliminate_dead_code(f);
    (g, a)
}
