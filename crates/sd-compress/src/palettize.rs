//! Palettization: each weight becomes a look-up table of 2^n values and n-bit indices, the
//! table found by globally optimal 1-D k-means (see [`crate::kmeans`]).
//!
//! Up to iOS17 the pass writes `constexpr_lut_to_dense` in its attribute form (one table per
//! tensor); from iOS18 it writes the input form, which also allows one table per group of
//! output channels.

use crate::CompressError;
use crate::kmeans::optimal_kmeans_1d;
use crate::weights::{candidate, gather_tables, read_f32, stored_bytes, to_dtype_bytes};
use rayon::prelude::*;
use sd_mil::blob::pack_bits;
use sd_mil::{ConstValue, DType, Function, Operation, Opset, Program, TensorType, Var};
use std::collections::{BTreeMap, HashMap};
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
pub fn palettize_values(values: &[f32], nbits: u32, groups: usize) -> Palette {
    let k = 1usize << nbits;
    let block = values.len() / groups;
    let parts: Vec<(Vec<f32>, Vec<u8>)> = values
        .par_chunks(block)
        .map(|chunk| {
            let (uniq, counts, index) = distinct_values(chunk);
            let c = optimal_kmeans_1d(&uniq, &counts, k);
            let mut lut: Vec<f32> = c.centroids.iter().map(|&x| x as f32).collect();
            lut.resize(k, 0.0);
            let idx = match index {
                DistinctIndex::Fp16(slot) => {
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
                    chunk.iter().map(|&v| cluster[fp16_key(v)]).collect()
                }
                DistinctIndex::Sorted => chunk
                    .iter()
                    .map(|&v| {
                        let u = uniq.partition_point(|&x| x < v as f64);
                        c.assignment[u] as u8
                    })
                    .collect(),
            };
            (lut, idx)
        })
        .collect();
    let mut p = Palette {
        lut: Vec::with_capacity(k * groups),
        indices: Vec::with_capacity(values.len()),
    };
    for (l, i) in parts {
        p.lut.extend(l);
        p.indices.extend(i);
    }
    p
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

/// How each value finds its distinct value.
enum DistinctIndex {
    /// Every value is an fp16 number: `slot[fp16_key(v)]` is its distinct value's index.
    Fp16(Vec<u32>),
    /// Binary search in the sorted distinct values.
    Sorted,
}

/// The table key of an fp16-exact value: its fp16 bits, −0 taken as +0.
fn fp16_key(v: f32) -> usize {
    let bits = half::f16::from_f32(v).to_bits();
    if bits == 0x8000 { 0 } else { bits as usize }
}

/// The distinct values of `chunk`, ascending, with how often each occurs (−0 and +0 are one
/// value). fp16 weights — every value exact in fp16 — are counted in a 65536-entry table in
/// one pass; others are sorted.
fn distinct_values(chunk: &[f32]) -> (Vec<f64>, Vec<f64>, DistinctIndex) {
    let exact = chunk.iter().all(|&v| half::f16::from_f32(v).to_f32() == v);
    if exact {
        let mut hist = vec![0u64; 1 << 16];
        for &v in chunk {
            hist[fp16_key(v)] += 1;
        }
        // Ascending: negatives from the most negative (bits 0xFBFF) to −min (0x8001), then
        // +0 … the largest positive (0x7BFF).
        let order = (0x8001..=0xFBFFusize).rev().chain(0..=0x7BFFusize);
        let mut slot = vec![u32::MAX; 1 << 16];
        let (mut uniq, mut counts) = (Vec::new(), Vec::new());
        for bits in order {
            if hist[bits] > 0 {
                slot[bits] = uniq.len() as u32;
                uniq.push(half::f16::from_bits(bits as u16).to_f64());
                counts.push(hist[bits] as f64);
            }
        }
        return (uniq, counts, DistinctIndex::Fp16(slot));
    }
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
    (uniq, counts, DistinctIndex::Sorted)
}

/// The `constexpr_lut_to_dense` op that replaces const `op` with a palettized form.
fn lut_op(
    op: &Operation,
    v: &ConstValue,
    nbits: u32,
    opset: Opset,
    granularity: Granularity,
) -> Result<Operation, CompressError> {
    let name = &op.name;
    let values = read_f32(name, v)?;
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
    let p = palettize_values(&values, nbits, groups);
    let k = 1usize << nbits;
    let lut_bytes = to_dtype_bytes(&p.lut, v.ty.dtype);
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
        let indices = ConstValue::from_bytes(
            TensorType::new(idx_dtype, v.ty.shape.clone()),
            pack_bits(&p.indices, nbits),
        )?;
        let mut lut_shape = vec![1; v.ty.rank() + 2];
        lut_shape[0] = groups;
        lut_shape[v.ty.rank()] = k;
        let lut = ConstValue::from_bytes(TensorType::new(v.ty.dtype, lut_shape), lut_bytes)?;
        inputs.push(("indices".to_string(), vec![sd_mil::Binding::Value(indices)]));
        inputs.push(("lut".to_string(), vec![sd_mil::Binding::Value(lut)]));
    } else {
        let packed = pack_bits(&p.indices, nbits);
        let shape: Vec<u8> =
            v.ty.shape
                .iter()
                .flat_map(|&d| (d as u32).to_le_bytes())
                .collect();
        attributes.insert(
            "lut".into(),
            ConstValue::from_bytes(TensorType::new(v.ty.dtype, [k]), lut_bytes)?,
        );
        attributes.insert(
            "indices".into(),
            ConstValue::from_bytes(TensorType::new(DType::U8, [packed.len()]), packed)?,
        );
        attributes.insert(
            "shape".into(),
            ConstValue::from_bytes(TensorType::new(DType::U32, [v.ty.rank()]), shape)?,
        );
    }
    Ok(Operation {
        op_type: "constexpr_lut_to_dense".into(),
        name: name.clone(),
        inputs,
        outputs: vec![Var::new(op.outputs[0].name.clone(), v.ty.clone())],
        attributes,
    })
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
    let replaced: Vec<(usize, Operation, u64)> = jobs
        .par_iter()
        .map(|&(i, bits)| {
            let op = &f.operations[i];
            let v = op.const_value().expect("candidate is a const");
            Ok((
                i,
                lut_op(op, v, bits, opset, options.granularity)?,
                v.ty.storage_len() as u64,
            ))
        })
        .collect::<Result<_, CompressError>>()?;
    let mut report = CompressReport::default();
    for (i, new_op, before) in replaced {
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
    fn the_fp16_table_finds_the_same_distinct_values_as_sorting() {
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
        let (u, c, index) = distinct_values(&values);
        assert!(matches!(index, DistinctIndex::Fp16(_)));
        // Not fp16-exact: the sorting path.
        let mut shifted = values.clone();
        shifted.push(1.0e-9);
        let (u2, c2, index2) = distinct_values(&shifted);
        assert!(matches!(index2, DistinctIndex::Sorted));
        let i = u2.iter().position(|&x| x == 1.0e-9f32 as f64).unwrap();
        let (mut u2, mut c2) = (u2, c2);
        u2.remove(i);
        c2.remove(i);
        assert_eq!(u, u2);
        assert_eq!(c, c2);
        // And the palettes agree.
        let p = palettize_values(&values, 4, 1);
        let lut_of =
            |x: f32| p.lut[p.indices[values.iter().position(|&v| v == x).unwrap()] as usize];
        assert!(lut_of(65504.0) > lut_of(0.0) && lut_of(-65504.0) < lut_of(0.0));
        assert_eq!(p.indices.len(), values.len());
    }
}
