//! Reading a mixed-bit recipe for `sd compress --recipe` and `sd convert --mixed-bit-recipe`:
//! a plain `{weight: bits}` object, or one recipe of a pre-analysis file (`sd compress
//! --analyze`, Apple's `--pre-analysis-json-path`) chosen by name or by a PSNR target.

use anyhow::{Result, bail};
use sd_compress::analysis::parse_pre_analysis;
use sd_compress::recipe;
use sd_runtime::pipeline::image::read_input_file;
use std::collections::HashMap;
use std::path::Path;

/// Which recipe of a pre-analysis file to take.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeChoice<'a> {
    /// By name (`recipe_4.50_bit_mixedpalette`, Apple's `--selected-recipe`).
    pub selected: Option<&'a str>,
    /// The smallest whose measured PSNR reaches this (dB).
    pub target_psnr: Option<f64>,
}

/// The weight → bits map of the recipe file at `path`, checked (known widths, integers);
/// which recipe was chosen is said on stderr.
pub fn read_recipe(path: &Path, choice: RecipeChoice<'_>) -> Result<HashMap<String, u32>> {
    let bytes = read_input_file(path, 64 << 20)?;
    let text = String::from_utf8_lossy(&bytes);
    let is_analysis = serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v.get("recipes").is_some())
        .unwrap_or(false);
    if !is_analysis {
        if choice.selected.is_some() || choice.target_psnr.is_some() {
            bail!(
                "{}: --selected-recipe and --target-psnr choose among the recipes of a pre-analysis \
                 file (`sd compress --analyze`); this is a single recipe",
                path.display()
            );
        }
        return recipe::parse_recipe(&text)
            .map_err(|reason| anyhow::anyhow!("recipe {}: {reason}", path.display()));
    }
    let analysis = parse_pre_analysis(&text)
        .map_err(|e| anyhow::anyhow!("pre-analysis {}: {e}", path.display()))?;
    let (name, chosen) = analysis
        .pick(choice.selected, choice.target_psnr)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let stats = &analysis.recipe_stats[name];
    eprintln!(
        "recipe {name}: {:.2} bits per weight, measured {:.1} dB",
        stats.mean_bits, stats.psnr_db
    );
    let widths: Vec<(&str, serde_json::Value)> = chosen
        .iter()
        .map(|(k, b)| (k.as_str(), (*b).into()))
        .collect();
    recipe::checked_recipe(widths.iter().map(|(k, v)| (*k, v)))
        .map_err(|reason| anyhow::anyhow!("{} recipe {name}: {reason}", path.display()))
}
