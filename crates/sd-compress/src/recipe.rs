//! Mixed-bit recipes: a JSON object mapping weight (const op) names to bit widths, as Apple's
//! mixed-bit palettization tooling writes them; 16 or 32 keeps a weight uncompressed.

use crate::CompressError;
use std::collections::HashMap;
use std::path::Path;

/// Reads a recipe `{ "<weight name>": nbits, … }`.
pub fn read_recipe(path: &Path) -> Result<HashMap<String, u32>, CompressError> {
    let err = |reason: String| CompressError::Recipe {
        path: path.display().to_string(),
        reason,
    };
    let text = sd_mil::files::read_regular_string(path, sd_mil::files::MAX_JSON_BYTES)
        .map_err(|e| err(e.to_string()))?;
    parse_recipe(&text).map_err(err)
}

/// Parses recipe JSON text; every value must be one of 1, 2, 3, 4, 6, 8, 16, 32.
pub fn parse_recipe(text: &str) -> Result<HashMap<String, u32>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v
        .as_object()
        .ok_or("a recipe is a JSON object {weight name: bits}")?;
    checked_recipe(obj.iter().map(|(k, v)| (k.as_str(), v)))
}

/// A recipe from `(weight name, bits)` pairs, every width checked as [`parse_recipe`] does.
pub fn checked_recipe<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>,
) -> Result<HashMap<String, u32>, String> {
    pairs
        .into_iter()
        .map(|(k, v)| match v.as_u64() {
            Some(b @ (1 | 2 | 3 | 4 | 6 | 8 | 16 | 32)) => Ok((k.to_string(), b as u32)),
            _ => Err(format!("`{k}`: {v} is not a supported bit width")),
        })
        .collect()
}
