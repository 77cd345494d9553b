//! Palettization: each weight becomes a look-up table of 2^n values and n-bit indices, the
//! table found by globally optimal 1-D k-means (see [`crate::kmeans`]).
//!
//! Up to iOS17 the pass writes `constexpr_lut_to_dense` in its attribute form (one table per
//! tensor); from iOS18 it writes the input form, which also allows one table per group of
//! output channels.

use crate::CompressError;
use crate::kmeans::optimal_kmeans_1d;
use crate::lazy::{LazyPalette, PalettePart, Part};
use crate::weights::{candidate, check_finite, gather_tables, stored_bytes};
use rayon::prelude::*;
use sd_mil::{ConstValue, DType, Function, Operation, Opset, Program, TensorType, Var};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tracing::debug;

/// How many tables a weight gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One table for the whole tensor.
    PerTensor,
    /// One table per group of `group_size` output channels (axis 0); iOS18 and later.
    PerGroupedChannel {
        /// Output channels per table; must divide the channel count.
        group_size: usize,
    },
}

/// Options of [`palettize`].
#[derive(Debug, Clone)]
pub struct PalettizeOptions {
    /// Index width: 1, 2, 4, 6 or 8 bits (3 also from iOS18); 16 leaves the weights that
    /// `per_weight_bits` does not name uncompressed.
    pub nbits: u32,
    /// Only weights with more elements than this are palettized (coremltools: 2048).
    pub weight_threshold: usize,
    /// Per tensor or per grouped channel.
    pub granularity: Granularity,
    /// Per-weight bit widths that override `nbits` (a mixed-bit recipe); a weight mapped to
    /// 16 or 32 is left uncompressed.
    pub per_weight_bits: HashMap<String, u32>,
}

impl PalettizeOptions {
    /// Per-tensor palettization at `nbits` with coremltools' default threshold.
    pub fn new(nbits: u32) -> Self {
        PalettizeOptions {
            nbits,
            weight_threshold: 2048,
            granularity: Granularity::PerTensor,
            per_weight_bits: HashMap::new(),
        }
    }
}

/// What a pass changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompressReport {
    /// Weights compressed.
    pub weights: usize,
    /// Bytes of those weights before.
    pub bytes_before: u64,
    /// Bytes of their compressed form.
    pub bytes_after: u64,
}

/// A palettized weight: its table(s), ascending, and one index per element.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// `groups × 2^n` table entries (unused entries 0).
    pub lut: Vec<f32>,
    /// Index of each element in its group's table.
    pub indices: Vec<u8>,
}

/// Clusters `values` (laid out with `groups` equal leading blocks) into `2^nbits` entries per block.
/// fp16 weights — every value exact in fp16 — go through [`palettize_fp16`]'s counting table
/// (the same clusters as sorting, found in two passes); others are sorted.
pub fn palettize_values(values: &[f32], nbits: u32, groups: usize) -> Palette {
    let k = 1usize << nbits;
    let parts = values
        .par_chunks(values.len() / groups)
        .map(|chunk| {
            // The fp16 bits of every value, when every value is exact in fp16.
            let bits: Option<Vec<u16>> = chunk
                .par_iter()
                .with_min_len(1 << 16)
                .map(|&v| {
                    let h = half::f16::from_f32(v);
                    (h.to_f32() == v).then(|| h.to_bits())
                })
                .collect();
            match bits {
                Some(bits) => fp16_block(&bits, k),
                None => sorted_block(chunk, k),
            }
        })
        .collect();
    assemble(parts, k, groups, values.len())
}

/// [`palettize_values`] for an fp16 weight given as its bits (−0 and +0 are one value; a
/// non-finite element, which callers refuse beforehand, gets index 0).
pub fn palettize_fp16(bits: &[u16], nbits: u32, groups: usize) -> Palette {
    let k = 1usize << nbits;
    let parts = bits
        .par_chunks(bits.len() / groups)
        .map(|chunk| fp16_block(chunk, k))
        .collect();
    assemble(parts, k, groups, bits.len())
}

fn assemble(parts: Vec<(Vec<f32>, Vec<u8>)>, k: usize, groups: usize, n: usize) -> Palette {
    let mut p = Palette {
        lut: Vec::with_capacity(k * groups),
        indices: Vec::with_capacity(n),
    };
    for (l, i) in parts {
        p.lut.extend(l);
        p.indices.extend(i);
    }
    p
}

/// The counting-table key of fp16 bits: −0 taken as +0.
fn fp16_key(bits: u16) -> usize {
    if bits == 0x8000 { 0 } else { bits as usize }
}

/// [`palettize_fp16`] of a weight given as its little-endian fp16 bytes, with the indices
/// packed at `nbits` ([`sd_mil::blob::pack_bits`]'s layout): the table, then the packed
/// indices, computed in one pass over the elements after the counting pass, without an
/// unpacked copy. Fails with the index of the first infinity or NaN, if any (found by the
/// counting pass, so the weight is not read an extra time to check it).
pub fn palettize_fp16_packed(
    bytes: &[u8],
    nbits: u32,
    groups: usize,
) -> Result<(Vec<f32>, Vec<u8>), usize> {
    let k = 1usize << nbits;
    let n = bytes.len() / 2;
    let group_len = n / groups;
    let non_finite = |bits: u16| bits & 0x7C00 == 0x7C00;
    let per_group: Vec<(Vec<f32>, Vec<u8>)> = bytes
        .par_chunks(group_len * 2)
        .map(|g| {
            let hist = fp16_histogram(g.par_chunks(2 << 20), |b| b.chunks_exact(2).map(le_u16));
            let clean = (0..1usize << 16).all(|b| hist[b] == 0 || !non_finite(b as u16));
            clean.then(|| fp16_clusters(&hist, k))
        })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            bytes
                .chunks_exact(2)
                .position(|b| non_finite(le_u16(b)))
                .unwrap_or(0)
        })?;
    let packed_len = sd_mil::blob::packed_len(n as u64, nbits) as usize;
    let mut packed = vec![0u8; packed_len];
    // Pieces of a multiple of 8 elements pack independently (and in parallel).
    const PIECE: usize = 8 * 4096;
    packed
        .par_chunks_mut(PIECE / 8 * nbits as usize)
        .zip(bytes.par_chunks(PIECE * 2))
        .enumerate()
        .for_each(|(p, (out, piece))| {
            let mut idx = [0u8; PIECE];
            let (start, len) = (p * PIECE, piece.len() / 2);
            // Element `start + e` is in group (start + e) / group_len: walk the boundaries.
            let mut group = start / group_len;
            let mut next_group_at = (group + 1) * group_len - start;
            let mut table = &per_group[group].1;
            for (e, (dst, b)) in idx.iter_mut().zip(piece.chunks_exact(2)).enumerate() {
                if e == next_group_at {
                    group += 1;
                    next_group_at += group_len;
                    table = &per_group[group].1;
                }
                *dst = table[fp16_key(le_u16(b))];
            }
            sd_mil::blob::pack_bits_into(&idx[..len], nbits, out);
        });
    let lut = per_group.into_iter().flat_map(|(l, _)| l).collect();
    Ok((lut, packed))
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

/// The 65536-entry counting table of fp16 bit patterns over parallel parts, each read by
/// `bits_of`.
fn fp16_histogram<P, I>(parts: P, bits_of: impl Fn(P::Item) -> I + Sync + Send) -> Vec<u64>
where
    P: ParallelIterator,
    I: Iterator<Item = u16>,
{
    parts
        .map(|part| {
            let mut h = vec![0u64; 1 << 16];
            for b in bits_of(part) {
                h[fp16_key(b)] += 1;
            }
            h
        })
        .reduce(
            || vec![0u64; 1 << 16],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// One block of fp16 bits: count each value in a 65536-entry table, cluster the distinct
/// values, and index every element through a table from bits to cluster.
fn fp16_block(bits: &[u16], k: usize) -> (Vec<f32>, Vec<u8>) {
    let hist = fp16_histogram(bits.par_chunks(1 << 20), |part| part.iter().copied());
    let (lut, cluster) = fp16_clusters(&hist, k);
    let idx = bits
        .par_iter()
        .with_min_len(1 << 16)
        .map(|&b| cluster[fp16_key(b)])
        .collect();
    (lut, idx)
}

/// The table of `k` entries for a counting table of fp16 bit patterns, and each pattern's
/// cluster (0 for patterns that do not occur).
fn fp16_clusters(hist: &[u64], k: usize) -> (Vec<f32>, Vec<u8>) {
    // Ascending: negatives from the most negative (0xFBFF) to −min (0x8001), then +0 … the
    // largest positive (0x7BFF); infinities and NaNs are left out.
    let order = (0x8001..=0xFBFFusize).rev().chain(0..=0x7BFFusize);
    let mut slot = vec![u32::MAX; 1 << 16];
    let (mut uniq, mut counts) = (Vec::new(), Vec::new());
    for b in order {
        if hist[b] > 0 {
            slot[b] = uniq.len() as u32;
            uniq.push(half::f16::from_bits(b as u16).to_f64());
            counts.push(hist[b] as f64);
        }
    }
    let c = optimal_kmeans_1d(&uniq, &counts, k);
    let cluster: Vec<u8> = slot
        .iter()
        .map(|&u| {
            if u == u32::MAX {
                0
            } else {
                c.assignment[u as usize] as u8
            }
        })
        .collect();
    (table(&c.centroids, k), cluster)
}

/// One block of arbitrary values: sort, cluster the distinct values, binary-search each.
fn sorted_block(chunk: &[f32], k: usize) -> (Vec<f32>, Vec<u8>) {
    let mut sorted: Vec<f32> = chunk.to_vec();
    sorted.sort_by(f32::total_cmp);
    let mut uniq: Vec<f64> = Vec::new();
    let mut counts: Vec<f64> = Vec::new();
    for &v in &sorted {
        if uniq.last() == Some(&(v as f64)) {
            *counts.last_mut().expect("non-empty") += 1.0;
        } else {
            uniq.push(v as f64);
            counts.push(1.0);
        }
    }
    drop(sorted);
    let c = optimal_kmeans_1d(&uniq, &counts, k);
    let idx = chunk
        .iter()
        .map(|&v| c.assignment[uniq.partition_point(|&x| x < v as f64)] as u8)
        .collect();
    (table(&c.centroids, k), idx)
}

/// A table of `k` entries: the centroids, then zeros.
fn table(centroids: &[f64], k: usize) -> Vec<f32> {
    let mut lut: Vec<f32> = centroids.iter().map(|&x| x as f32).collect();
    lut.resize(k, 0.0);
    lut
}

/// Tells each lazy palette which one the writer reads next (program order).
fn link_in_order(palettes: &[Arc<LazyPalette>]) {
    for w in palettes.windows(2) {
        w[0].set_next(w[1].clone());
    }
}

fn check_bits(nbits: u32, opset: Opset) -> Result<(), CompressError> {
    let ok = matches!(nbits, 1 | 2 | 4 | 6 | 8) || (nbits == 3 && opset >= Opset::CoreML8);
    if !ok {
        return Err(CompressError::InvalidOption {
            option: "nbits",
            reason: format!("{nbits} bits is not supported in {}", opset.name()),
        });
    }
    Ok(())
}

/// The `constexpr_lut_to_dense` op that replaces const `op` with a palettized form.
fn lut_op(
    op: &Operation,
    v: &ConstValue,
    nbits: u32,
    opset: Opset,
    granularity: Granularity,
) -> Result<(Operation, Arc<LazyPalette>), CompressError> {
    let name = &op.name;
    if v.ty.dtype != DType::F16 {
        // fp16 weights are checked by the counting pass of their palettization.
        check_finite(name, v)?;
    }
    let groups = match granularity {
        Granularity::PerTensor => 1,
        Granularity::PerGroupedChannel { group_size } => {
            if opset < Opset::CoreML8 {
                return Err(CompressError::InvalidOption {
                    option: "granularity",
                    reason: "per-grouped-channel tables need iOS18".into(),
                });
            }
            if group_size == 0 || !v.ty.shape[0].is_multiple_of(group_size) {
                return Err(CompressError::InvalidOption {
                    option: "group_size",
                    reason: format!(
                        "{group_size} does not divide {} channels of `{name}`",
                        v.ty.shape[0]
                    ),
                });
            }
            v.ty.shape[0] / group_size
        }
    };
    let k = 1usize << nbits;
    let lazy = LazyPalette::new(name, v, nbits, groups);
    let part = |part: Part| -> Arc<dyn sd_mil::TensorSource> {
        Arc::new(PalettePart {
            palette: lazy.clone(),
            part,
        })
    };
    let mut attributes = BTreeMap::new();
    let mut inputs = Vec::new();
    if opset >= Opset::CoreML8 {
        let idx_dtype = match nbits {
            1 => DType::U1,
            2 => DType::U2,
            3 => DType::U3,
            4 => DType::U4,
            6 => DType::U6,
            _ => DType::U8,
        };
        let indices = ConstValue::from_source(
            TensorType::new(idx_dtype, v.ty.shape.clone()),
            part(Part::Indices),
        )?;
        let mut lut_shape = vec![1; v.ty.rank() + 2];
        lut_shape[0] = groups;
        lut_shape[v.ty.rank()] = k;
        let lut = ConstValue::from_source(TensorType::new(v.ty.dtype, lut_shape), part(Part::Lut))?;
        inputs.push(("indices".to_string(), vec![sd_mil::Binding::Value(indices)]));
        inputs.push(("lut".to_string(), vec![sd_mil::Binding::Value(lut)]));
    } else {
        let packed_len = lazy.len(Part::Indices);
        let shape: Vec<u8> =
            v.ty.shape
                .iter()
                .flat_map(|&d| (d as u32).to_le_bytes())
                .collect();
        attributes.insert(
            "lut".into(),
            ConstValue::from_source(TensorType::new(v.ty.dtype, [k]), part(Part::Lut))?,
        );
        attributes.insert(
            "indices".into(),
            ConstValue::from_source(
                TensorType::new(DType::U8, [packed_len]),
                part(Part::Indices),
            )?,
        );
        attributes.insert(
            "shape".into(),
            ConstValue::from_bytes(TensorType::new(DType::U32, [v.ty.rank()]), shape)?,
        );
    }
    let new_op = Operation {
        op_type: "constexpr_lut_to_dense".into(),
        name: name.clone(),
        inputs,
        outputs: vec![Var::new(op.outputs[0].name.clone(), v.ty.clone())],
        attributes,
    };
    Ok((new_op, lazy))
}

/// Palettizes every eligible weight of the program's `main` function in place: float consts of
/// rank ≥ 2 with more than `weight_threshold` elements, except embedding tables read by
/// `gather`. Output names and types are unchanged, so consumers need no edit.
pub fn palettize(
    program: &mut Program,
    options: &PalettizeOptions,
) -> Result<CompressReport, CompressError> {
    let f: &mut Function = program.main_mut().ok_or(CompressError::NoMain)?;
    let opset = f.opset;
    if options.nbits < 16 {
        check_bits(options.nbits, opset)?;
    }
    for &b in options.per_weight_bits.values() {
        if b < 16 {
            check_bits(b, opset)?;
        }
    }
    let tables = gather_tables(f);
    let eligible: Vec<&str> = f
        .operations
        .iter()
        .filter(|op| !op.outputs.is_empty() && !tables.contains(&op.outputs[0].name))
        .filter(|op| candidate(op, options.weight_threshold).is_some())
        .map(|op| op.name.as_str())
        .collect();
    let mut named: Vec<&String> = options.per_weight_bits.keys().collect();
    named.sort();
    if let Some(unknown) = named.into_iter().find(|n| !eligible.contains(&n.as_str())) {
        let tail = unknown.rsplit(['.', '_', '/']).next().unwrap_or(unknown);
        let similar: Vec<&str> = eligible
            .iter()
            .filter(|e| e.ends_with(tail))
            .take(3)
            .copied()
            .collect();
        return Err(CompressError::UnknownWeight {
            name: unknown.clone(),
            hint: if similar.is_empty() {
                String::new()
            } else {
                format!("; similar: {}", similar.join(", "))
            },
        });
    }
    let jobs: Vec<(usize, u32)> = f
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            !tables.contains(
                &op.outputs
                    .first()
                    .map(|v| v.name.clone())
                    .unwrap_or_default(),
            )
        })
        .filter(|(_, op)| candidate(op, options.weight_threshold).is_some())
        .filter_map(|(i, op)| {
            let bits = options
                .per_weight_bits
                .get(&op.name)
                .copied()
                .unwrap_or(options.nbits);
            (bits < 16).then_some((i, bits))
        })
        .collect();
    let replaced: Vec<(usize, Operation, u64, Arc<LazyPalette>)> = jobs
        .par_iter()
        .map(|&(i, bits)| {
            let op = &f.operations[i];
            let v = op.const_value().expect("candidate is a const");
            let (new_op, palette) = lut_op(op, v, bits, opset, options.granularity)?;
            Ok((i, new_op, v.ty.storage_len() as u64, palette))
        })
        .collect::<Result<_, CompressError>>()?;
    let mut report = CompressReport::default();
    let palettes: Vec<Arc<LazyPalette>> = replaced.iter().map(|r| r.3.clone()).collect();
    link_in_order(&palettes);
    for (i, new_op, before, _) in replaced {
        report.weights += 1;
        report.bytes_before += before;
        report.bytes_after += stored_bytes(&new_op);
        f.operations[i] = new_op;
    }
    debug!(
        weights = report.weights,
        before = report.bytes_before,
        after = report.bytes_after,
        "palettized"
    );
    sd_mil::graph::check_function(f).map_err(sd_mil::MilError::from)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_fp16_palettes_equal_packing_the_unpacked_ones() {
        let mut seed = 7u64;
        for (n, groups) in [
            (100_003usize, 1usize),
            (8 * 4096 * 3 + 40, 4),
            (24, 3),
            (7, 1),
        ] {
            let n = n / groups * groups;
            let bits: Vec<u16> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    half::f16::from_f32(((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1)
                        .to_bits()
                })
                .collect();
            let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
            for nbits in [3, 4, 6, 8] {
                let whole = palettize_fp16(&bits, nbits, groups);
                let (lut, packed) = palettize_fp16_packed(&bytes, nbits, groups).unwrap();
                assert_eq!(lut, whole.lut, "n {n} groups {groups} bits {nbits}");
                assert_eq!(
                    packed,
                    sd_mil::blob::pack_bits(&whole.indices, nbits),
                    "n {n} groups {groups} bits {nbits}"
                );
            }
        }
        let mut bytes: Vec<u8> = (0..64u16).flat_map(|b| b.to_le_bytes()).collect();
        for (at, bad) in [(5usize, 0x7E00u16), (40, 0xFC00), (63, 0x7C00)] {
            let mut b = bytes.clone();
            b[2 * at..2 * at + 2].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(palettize_fp16_packed(&b, 4, 2), Err(at));
        }
        bytes.truncate(16);
        assert!(palettize_fp16_packed(&bytes, 4, 1).is_ok());
    }

    #[test]
    fn the_fp16_counting_table_gives_the_clusters_sorting_gives() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut values: Vec<f32> = (0..20000)
            .map(|_| half::f16::from_f32(next() * 0.05).to_f32())
            .collect();
        let tiny = half::f16::from_bits(1).to_f32();
        values.extend([0.0, -0.0, 0.0, 65504.0, -65504.0, tiny, -tiny]);
        let bits: Vec<u16> = values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        for k in [2, 16, 64] {
            let (lut_a, idx_a) = fp16_block(&bits, k);
            let (lut_b, idx_b) = sorted_block(&values, k);
            assert_eq!(lut_a, lut_b, "k={k}");
            assert_eq!(idx_a, idx_b, "k={k}");
        }
        assert_eq!(palettize_values(&values, 4, 1), palettize_fp16(&bits, 4, 1));
    }
}
