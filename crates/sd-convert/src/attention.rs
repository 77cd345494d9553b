//! Multi-head attention in the forms Apple's converter offers, on the (B, C, 1, S) layout.

use crate::error::{ConvertError, Result};
use crate::nn::Net;
use sd_mil::Var;
use std::fmt;
use std::str::FromStr;

/// Query positions per chunk in [`AttentionImpl::SplitEinsumV2`].
pub const V2_CHUNK: usize = 512;

/// How the attention of the UNet's transformer blocks is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionImpl {
    /// Batched matmuls over (B, heads, d_head, S) views; best for GPU.
    Original,
    /// One einsum pair per head on channel slices; best for the Neural Engine (default).
    #[default]
    SplitEinsum,
    /// SPLIT_EINSUM with the query sequence cut into chunks of 512; the last chunk takes the
    /// remainder (Apple's version drops it).
    SplitEinsumV2,
}

impl AttentionImpl {
    /// The flag value ("ORIGINAL", "SPLIT_EINSUM", "SPLIT_EINSUM_V2").
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionImpl::Original => "ORIGINAL",
            AttentionImpl::SplitEinsum => "SPLIT_EINSUM",
            AttentionImpl::SplitEinsumV2 => "SPLIT_EINSUM_V2",
        }
    }
}

impl fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttentionImpl {
    type Err = ConvertError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "ORIGINAL" => Ok(AttentionImpl::Original),
            "SPLIT_EINSUM" => Ok(AttentionImpl::SplitEinsum),
            "SPLIT_EINSUM_V2" => Ok(AttentionImpl::SplitEinsumV2),
            _ => Err(ConvertError::Invalid(format!(
                "unknown attention implementation `{s}` (ORIGINAL, SPLIT_EINSUM, SPLIT_EINSUM_V2)"
            ))),
        }
    }
}

/// The query ranges SPLIT_EINSUM_V2 uses for a query length: chunks of [`V2_CHUNK`], the last
/// one extended to the end; a single range when the query is shorter than one chunk.
pub fn v2_chunks(sq: usize) -> Vec<(usize, usize)> {
    let n = sq / V2_CHUNK;
    if n <= 1 {
        return vec![(0, sq)];
    }
    (0..n)
        .map(|i| {
            (
                i * V2_CHUNK,
                if i + 1 == n { sq } else { (i + 1) * V2_CHUNK },
            )
        })
        .collect()
}

/// softmax(qᵀk · d_head^−½) v for q (B, C, 1, Sq), k and v (B, C, 1, Sk), C = heads · d_head;
/// returns (B, C, 1, Sq).
pub fn attention(
    net: &mut Net<'_>,
    imp: AttentionImpl,
    q: &Var,
    k: &Var,
    v: &Var,
    heads: usize,
) -> Result<Var> {
    let (b, c, sq) = (q.ty.shape[0], q.ty.shape[1], q.ty.shape[3]);
    let sk = k.ty.shape[3];
    let dh = c / heads;
    let scale = (dh as f32).powf(-0.5);
    match imp {
        AttentionImpl::Original => {
            let mq = net.reshape(q, &[b, heads, dh, sq])?;
            let mk = net.reshape(k, &[b, heads, dh, sk])?;
            let mv = net.reshape(v, &[b, heads, dh, sk])?;
            let w = net.matmul(&mq, &mk, true, false)?; // (B, h, Sq, Sk)
            let w = net.mul_scalar(&w, scale)?;
            let w = net.softmax(&w, 3)?;
            let o = net.matmul(&mv, &w, false, true)?; // (B, h, dh, Sq)
            net.reshape(&o, &[b, c, 1, sq])
        }
        AttentionImpl::SplitEinsum | AttentionImpl::SplitEinsumV2 => {
            let chunks = if imp == AttentionImpl::SplitEinsumV2 {
                v2_chunks(sq)
            } else {
                vec![(0, sq)]
            };
            let kt = net.transpose(k, &[0, 3, 2, 1])?; // (B, Sk, 1, C)
            let mut outs = Vec::with_capacity(heads);
            for h in 0..heads {
                let (c0, c1) = (h * dh, (h + 1) * dh);
                let qh = net.slice_axis(q, 1, c0, c1)?;
                let kh = net.slice_axis(&kt, 3, c0, c1)?;
                let vh = net.slice_axis(v, 1, c0, c1)?;
                let mut parts = Vec::with_capacity(chunks.len());
                for &(a, e) in &chunks {
                    let qc = if chunks.len() == 1 {
                        qh.clone()
                    } else {
                        net.slice_axis(&qh, 3, a, e)?
                    };
                    let w = einsum(net, &kh, &qc, "bkhc,bchq->bkhq")?; // (B, Sk, 1, Sq)
                    let w = net.mul_scalar(&w, scale)?;
                    let w = net.softmax(&w, 1)?;
                    parts.push(einsum(net, &vh, &w, "bchk,bkhq->bchq")?); // (B, dh, 1, Sq)
                }
                let refs: Vec<&Var> = parts.iter().collect();
                outs.push(net.concat(&refs, 3)?);
            }
            let refs: Vec<&Var> = outs.iter().collect();
            net.concat(&refs, 1)
        }
    }
}

fn einsum(net: &mut Net<'_>, a: &Var, b: &Var, eq: &str) -> Result<Var> {
    Ok(net
        .fb
        .op("einsum")
        .inputs("values", &[a, b])
        .param("equation", eq)
        .build_one()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_chunks_keep_the_remainder() {
        assert_eq!(v2_chunks(256), vec![(0, 256)]);
        assert_eq!(v2_chunks(1024), vec![(0, 512), (512, 1024)]);
        // 80×80 latent: Apple drops positions 6144..6400; the last chunk takes them.
        let c = v2_chunks(6400);
        assert_eq!(c.len(), 12);
        assert_eq!(c.last(), Some(&(5632, 6400)));
        assert_eq!(v2_chunks(700), vec![(0, 700)]);
    }
}
