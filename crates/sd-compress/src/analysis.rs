//! Mixed-bit pre-analysis, Apple's procedure (`mixed_bit_compression_pre_analysis.py`): for
//! each candidate weight (more than [`MIN_ELEMENTS`] elements), the signal integrity (PSNR of
//! the model's output) when that weight alone is palettized at 1, 2, 4, 6 and 8 bits; then,
//! per bit width, the weights added best-first and the cumulative PSNR tracked; then recipes
//! for PSNR thresholds spaced from "original − 1 dB" down to "linear 8-bit + 5 dB", each
//! giving every weight the fewest bits whose cumulative PSNR stays above the threshold, and
//! each measured as a whole.
//!
//! The model is measured through a [`Probe`] (sd-cli runs the package in sd-runtime); the
//! weights a probe is given are exactly what the palettized package decompresses to (the same
//! k-means as [`crate::palettize`], tables rounded to the weight's type), so a recipe applied
//! with [`crate::palettize`] reproduces the PSNR measured here.

use crate::CompressError;
use crate::palettize::palettize_values;
use crate::quantize::quantize_values;
use crate::weights::{candidate, gather_tables, read_f32};
use sd_mil::{DType, Function};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// The bit widths Apple's pre-analysis tries (those the Neural Engine accelerates).
pub const ANALYSIS_BITS: [u32; 5] = [1, 2, 4, 6, 8];

/// Weights with more elements than this are candidates (Apple's `PALETTIZE_MIN_SIZE`).
pub const MIN_ELEMENTS: usize = 100_000;

/// A model under measurement: its weights can be swapped and its output compared with the
/// uncompressed model's.
pub trait Probe {
    /// Uses `values` for the weight whose const output is `name` from now on.
    fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<(), CompressError>;
    /// The PSNR (dB) of the model's outputs with the current weights against the
    /// uncompressed model's (finite: Apple's PSNR with its epsilons).
    fn psnr(&mut self) -> Result<f64, CompressError>;
}

/// Options of [`analyze`].
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// Bit widths to measure, ascending (default [`ANALYSIS_BITS`]).
    pub bits: Vec<u32>,
    /// Candidates have more elements than this (default [`MIN_ELEMENTS`]).
    pub min_elements: usize,
    /// How many recipes to write (Apple's `--num-recipes`, default 7).
    pub recipes: usize,
    /// The signal integrity of the uncompressed model as deployed (e.g. its fp16 run against
    /// fp32), the top of the threshold range; `None`: the probe's unmodified PSNR.
    pub original_psnr: Option<f64>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            bits: ANALYSIS_BITS.to_vec(),
            min_elements: MIN_ELEMENTS,
            recipes: 7,
            original_psnr: None,
        }
    }
}

/// The cumulative curve of one bit width: weights in the order added, PSNR after each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cumulative {
    /// Weight (const op) names, best single-layer PSNR first.
    pub order: Vec<String>,
    /// PSNR after palettizing `order[..=i]`.
    pub psnr: Vec<f64>,
}

/// What a recipe gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeStats {
    /// The per-layer cumulative threshold it was built for (dB).
    pub threshold_db: f64,
    /// The PSNR measured with the whole recipe applied (dB).
    pub psnr_db: f64,
    /// Mean bits per candidate element (16 = uncompressed).
    pub mean_bits: f64,
    /// Bytes of the candidate weights as compressed (indices and tables; 16-bit ones as fp16).
    pub size_bytes: u64,
}

/// The pre-analysis results, written as JSON (Apple's keys `single_layer`, `cumulative`,
/// `baselines`, `recipes`, plus the measured statistics of each recipe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreAnalysis {
    /// What was measured (package name).
    pub model_version: String,
    /// How the output was measured (inputs, precision).
    pub measured_on: String,
    /// Elements of each candidate weight.
    pub sizes: BTreeMap<String, usize>,
    /// Bits → weight → PSNR with only that weight palettized.
    pub single_layer: BTreeMap<String, BTreeMap<String, f64>>,
    /// Bits → the cumulative curve.
    pub cumulative: BTreeMap<String, Cumulative>,
    /// `original`, `linear_8bit`, and each recipe's measured PSNR.
    pub baselines: BTreeMap<String, f64>,
    /// Recipe name (`recipe_<mean bits>_bit_mixedpalette`) → weight → bits.
    pub recipes: BTreeMap<String, BTreeMap<String, u32>>,
    /// Recipe name → what it gives.
    pub recipe_stats: BTreeMap<String, RecipeStats>,
    /// Seconds the analysis took.
    pub seconds: f64,
}

/// Progress of [`analyze`].
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisEvent<'a> {
    /// A stage (`single 4-bit`, `cumulative 4-bit`, `recipes`) advanced to `done` of `total`.
    Progress {
        /// The stage.
        stage: &'a str,
        /// Evaluations done in it.
        done: usize,
        /// Evaluations in it.
        total: usize,
    },
}

struct Weight {
    op: String,
    out: String,
    dtype: DType,
    channels: usize,
    original: Vec<f32>,
}

/// `values` rounded to `dtype` (fp16 tables are stored as fp16).
fn rounded(mut values: Vec<f32>, dtype: DType) -> Vec<f32> {
    if dtype == DType::F16 {
        values
            .iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    values
}

/// What a weight palettized per tensor at `nbits` decompresses to.
pub fn fake_palettized(values: &[f32], nbits: u32, dtype: DType) -> Vec<f32> {
    let p = palettize_values(values, nbits, 1);
    let lut = rounded(p.lut, dtype);
    p.indices.iter().map(|&i| lut[i as usize]).collect()
}

/// What a weight quantized to linear 8 bits (per output channel) decompresses to.
fn fake_linear8(w: &Weight) -> Vec<f32> {
    let q = quantize_values(&w.original, w.channels);
    let scales = rounded(q.scales, w.dtype);
    let block = w.original.len() / w.channels.max(1);
    q.data
        .iter()
        .enumerate()
        .map(|(i, &d)| d as f32 * scales[i / block.max(1)])
        .collect()
}

fn weights(f: &Function, threshold: usize) -> Result<Vec<Weight>, CompressError> {
    let tables = gather_tables(f);
    f.operations
        .iter()
        .filter(|op| !op.outputs.is_empty() && !tables.contains(&op.outputs[0].name))
        .filter_map(|op| candidate(op, threshold).map(|v| (op, v)))
        .map(|(op, v)| {
            Ok(Weight {
                op: op.name.clone(),
                out: op.outputs[0].name.clone(),
                dtype: v.ty.dtype,
                channels: v.ty.shape[0],
                original: read_f32(&op.name, v)?,
            })
        })
        .collect()
}

/// Bytes of a candidate at `bits` (16: uncompressed fp16).
fn stored(elements: usize, bits: u32) -> u64 {
    if bits >= 16 {
        elements as u64 * 2
    } else {
        (elements as u64 * bits as u64).div_ceil(8) + (2u64 << bits)
    }
}

/// Runs the pre-analysis of `f`'s weights through `probe` (see the module doc).
pub fn analyze(
    f: &Function,
    model_version: &str,
    measured_on: &str,
    probe: &mut dyn Probe,
    options: &AnalysisOptions,
    on_event: &mut dyn FnMut(AnalysisEvent),
) -> Result<PreAnalysis, CompressError> {
    let start = Instant::now();
    for &b in &options.bits {
        if !ANALYSIS_BITS.contains(&b) {
            return Err(CompressError::Analysis {
                reason: format!("{b} bits: the analysis measures 1, 2, 4, 6 or 8"),
            });
        }
    }
    let candidates = weights(f, options.min_elements)?;
    if candidates.is_empty() {
        return Err(CompressError::Analysis {
            reason: format!(
                "{model_version}: no weight has more than {} elements",
                options.min_elements
            ),
        });
    }
    let unmodified = probe.psnr()?;
    let original = options.original_psnr.unwrap_or(unmodified);
    let sizes: BTreeMap<String, usize> = candidates
        .iter()
        .map(|w| (w.op.clone(), w.original.len()))
        .collect();
    let mut single_layer = BTreeMap::new();
    let mut cumulative = BTreeMap::new();
    let n = candidates.len();
    for &bits in &options.bits {
        let stage = format!("single-layer {bits}-bit");
        let mut single = BTreeMap::new();
        for (i, w) in candidates.iter().enumerate() {
            probe.set_weight(&w.out, &fake_palettized(&w.original, bits, w.dtype))?;
            single.insert(w.op.clone(), probe.psnr()?);
            probe.set_weight(&w.out, &w.original)?;
            on_event(AnalysisEvent::Progress {
                stage: &stage,
                done: i + 1,
                total: n,
            });
        }
        // Best first; ties keep program order (stable sort).
        let mut order: Vec<&Weight> = candidates.iter().collect();
        order.sort_by(|a, b| single[&b.op].total_cmp(&single[&a.op]));
        let stage = format!("cumulative {bits}-bit");
        let mut psnr = Vec::with_capacity(n);
        for (i, w) in order.iter().enumerate() {
            probe.set_weight(&w.out, &fake_palettized(&w.original, bits, w.dtype))?;
            psnr.push(probe.psnr()?);
            on_event(AnalysisEvent::Progress {
                stage: &stage,
                done: i + 1,
                total: n,
            });
        }
        for w in &order {
            probe.set_weight(&w.out, &w.original)?;
        }
        single_layer.insert(bits.to_string(), single);
        cumulative.insert(
            bits.to_string(),
            Cumulative {
                order: order.iter().map(|w| w.op.clone()).collect(),
                psnr,
            },
        );
    }
    for w in &candidates {
        probe.set_weight(&w.out, &fake_linear8(w))?;
    }
    let linear8 = probe.psnr()?;
    for w in &candidates {
        probe.set_weight(&w.out, &w.original)?;
    }
    let mut baselines = BTreeMap::from([
        ("original".to_string(), original),
        ("linear_8bit".to_string(), linear8),
    ]);
    let mut recipes: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut recipe_stats = BTreeMap::new();
    let count = options.recipes.max(1);
    let (hi, lo) = (original - 1.0, linear8 + 5.0);
    for r in 0..count {
        let threshold = if count == 1 {
            hi
        } else {
            hi + (lo - hi) * r as f64 / (count - 1) as f64
        };
        let recipe = build_recipe(&cumulative, &options.bits, threshold, &sizes);
        if recipes.values().any(|existing| *existing == recipe) {
            continue;
        }
        let total: usize = sizes.values().sum();
        let bits_sum: f64 = recipe
            .iter()
            .map(|(k, b)| *b as f64 * sizes[k] as f64)
            .sum();
        let mean_bits = bits_sum / total.max(1) as f64;
        let size_bytes = recipe.iter().map(|(k, b)| stored(sizes[k], *b)).sum();
        for w in &candidates {
            let b = recipe[&w.op];
            if b < 16 {
                probe.set_weight(&w.out, &fake_palettized(&w.original, b, w.dtype))?;
            }
        }
        let psnr_db = probe.psnr()?;
        for w in &candidates {
            if recipe[&w.op] < 16 {
                probe.set_weight(&w.out, &w.original)?;
            }
        }
        on_event(AnalysisEvent::Progress {
            stage: "recipes",
            done: r + 1,
            total: count,
        });
        let mut key = format!("recipe_{mean_bits:.2}_bit_mixedpalette");
        while recipes.contains_key(&key) {
            key.push('+');
        }
        baselines.insert(key.clone(), psnr_db);
        recipe_stats.insert(
            key.clone(),
            RecipeStats {
                threshold_db: threshold,
                psnr_db,
                mean_bits,
                size_bytes,
            },
        );
        recipes.insert(key, recipe);
    }
    Ok(PreAnalysis {
        model_version: model_version.to_string(),
        measured_on: measured_on.to_string(),
        sizes,
        single_layer,
        cumulative,
        baselines,
        recipes,
        recipe_stats,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Apple's rule: each weight gets the fewest bits whose cumulative PSNR at that weight's place
/// in that width's order stays above `threshold`, else 16 (uncompressed).
fn build_recipe(
    cumulative: &BTreeMap<String, Cumulative>,
    bits: &[u32],
    threshold: f64,
    sizes: &BTreeMap<String, usize>,
) -> BTreeMap<String, u32> {
    sizes
        .keys()
        .map(|name| {
            let chosen = bits
                .iter()
                .copied()
                .find(|b| {
                    let c = &cumulative[&b.to_string()];
                    c.order
                        .iter()
                        .position(|n| n == name)
                        .is_some_and(|i| c.psnr[i] > threshold)
                })
                .unwrap_or(16);
            (name.clone(), chosen)
        })
        .collect()
}

/// Reads a pre-analysis file's JSON.
pub fn parse_pre_analysis(text: &str) -> Result<PreAnalysis, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

impl PreAnalysis {
    /// The recipe `name`, or the smallest recipe whose measured PSNR reaches `target_db`.
    pub fn pick(
        &self,
        name: Option<&str>,
        target_db: Option<f64>,
    ) -> Result<(&str, &BTreeMap<String, u32>), String> {
        let list = || {
            self.recipe_stats
                .iter()
                .map(|(k, s)| format!("{k} ({:.1} dB, {:.2} bits)", s.psnr_db, s.mean_bits))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (name, target_db) {
            (Some(n), _) => self
                .recipes
                .get_key_value(n)
                .map(|(k, r)| (k.as_str(), r))
                .ok_or_else(|| format!("no recipe `{n}`; the file has: {}", list())),
            (None, Some(t)) => self
                .recipe_stats
                .iter()
                .filter(|(_, s)| s.psnr_db >= t)
                .min_by_key(|(_, s)| s.size_bytes)
                .map(|(k, _)| (k.as_str(), &self.recipes[k]))
                .ok_or_else(|| format!("no recipe reaches {t} dB; the file has: {}", list())),
            (None, None) => Err(format!(
                "a pre-analysis file holds several recipes: choose one with --selected-recipe or \
                 --target-psnr ({})",
                list()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_rule_takes_the_fewest_bits_above_the_threshold() {
        let cumulative = BTreeMap::from([
            (
                "2".to_string(),
                Cumulative {
                    order: vec!["a".into(), "b".into()],
                    psnr: vec![40.0, 20.0],
                },
            ),
            (
                "4".to_string(),
                Cumulative {
                    order: vec!["b".into(), "a".into()],
                    psnr: vec![50.0, 45.0],
                },
            ),
        ]);
        let sizes = BTreeMap::from([("a".to_string(), 10), ("b".to_string(), 10)]);
        let r = build_recipe(&cumulative, &[2, 4], 30.0, &sizes);
        assert_eq!(r["a"], 2);
        assert_eq!(r["b"], 4);
        let r = build_recipe(&cumulative, &[2, 4], 48.0, &sizes);
        assert_eq!((r["a"], r["b"]), (16, 4));
        assert_eq!(stored(1000, 16), 2000);
        assert_eq!(stored(1000, 4), 500 + 32);
    }
}
