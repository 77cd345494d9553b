//! Apple's multilingual text-encoder projection (`python -m
//! python_coreml_stable_diffusion.multilingual_projection --input-path …`): a trained `Linear`
//! mapping the system's `NLContextualEmbedding` output (1, 256, 512) to the UNet's text width,
//! laid out as the UNet's `encoder_hidden_states` (1, C, 1, 256). The Swift pipeline loads it as
//! `MultilingualTextEncoderProjection` when asked for the multilingual text encoder.
//!
//! Apple's script reads the layer from a TorchScript file; this converter reads its weights from
//! safetensors (`weight` (C, 512) and optional `bias` (C), possibly under a module prefix).

use crate::error::{ConvertError, Result};
use crate::nn::{Net, join};
use crate::weights::WeightStore;
use sd_mil::{DType, Var};
use std::path::Path;

/// Tokens `NLContextualEmbedding` produces (Apple's `MAX_SEQUENCE_LENGTH`).
pub const MAX_SEQUENCE_LENGTH: usize = 256;
/// Width of `NLContextualEmbedding` vectors (Apple's `EMBED_DIM`).
pub const EMBED_DIM: usize = 512;
/// The input's name.
pub const INPUT: &str = "nlcontextualembeddings_output";
/// The output's name.
pub const OUTPUT: &str = sd_mil::signature::unet::ENCODER_HIDDEN_STATES;
/// The weights file looked for when a folder is given.
pub const WEIGHTS_FILE: &str = "projection.safetensors";

/// Opens the projection's weights: a safetensors file, or a folder holding
/// [`WEIGHTS_FILE`].
pub fn open_weights(path: &Path) -> Result<WeightStore> {
    let file = if path.is_dir() {
        path.join(WEIGHTS_FILE)
    } else {
        path.to_path_buf()
    };
    if file.is_file() && file.extension().is_none_or(|e| e != "safetensors") {
        return Err(ConvertError::Io {
            path: file,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a safetensors file: TorchScript and pickle files are not read; save the \
                 layer's state_dict with safetensors (`weight` (C, 512), `bias` (C))",
            ),
        });
    }
    WeightStore::open_files(&file, std::slice::from_ref(&file))
}

/// The module path of the projection's `Linear`: the prefix of the one tensor named `weight`
/// or `….weight`.
pub fn linear_prefix(w: &WeightStore) -> Result<String> {
    let mut found: Vec<&str> = w
        .names()
        .filter(|n| *n == "weight" || n.ends_with(".weight"))
        .collect();
    found.sort_unstable();
    match found.as_slice() {
        [one] => Ok(one
            .strip_suffix("weight")
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_string()),
        [] => Err(ConvertError::MissingTensor {
            path: w.root().to_path_buf(),
            tensor: "weight".into(),
        }),
        many => Err(ConvertError::Invalid(format!(
            "{}: several candidate projection weights ({}); expected one `Linear`",
            w.root().display(),
            many.join(", ")
        ))),
    }
}

/// Builds the projection for the `Linear` at `prefix`: input [`INPUT`] fp32
/// (1, 256, 512), output [`OUTPUT`] fp32 (1, C, 1, 256).
pub fn build(net: &mut Net<'_>, prefix: &str) -> Result<Vec<Var>> {
    let width = net
        .w
        .shape(&join(prefix, "weight"))?
        .first()
        .copied()
        .unwrap_or(0);
    let bias = net.w.contains(&join(prefix, "bias"));
    let x = net.input(INPUT, DType::F32, &[1, MAX_SEQUENCE_LENGTH, EMBED_DIM])?;
    let x = if net.dtype() == DType::F16 {
        net.cast(&x, "fp16", None)?
    } else {
        x
    };
    let y = net.linear(&x, prefix, width, bias)?;
    let y = net.transpose(&y, &[0, 2, 1])?;
    let y = net.reshape(&y, &[1, width, 1, MAX_SEQUENCE_LENGTH])?;
    Ok(vec![net.output(&y, OUTPUT)?])
}
