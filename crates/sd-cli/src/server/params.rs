//! Reading request fields: the range checks, seeds and base64 images every API shares, each
//! error naming the field as that API spells it.

use super::engine::ModelInfo;
use super::error::ApiError;
use super::job::JobSpec;
use super::limits::Limits;
use base64::Engine as _;
use sd_runtime::pipeline::image::resample::{Filter, resize};
use sd_runtime::pipeline::image::{GrayImage, RgbImage, decode_image_within};
use sd_runtime::pipeline::{GenerationRequest, SchedulerKind};
use std::hash::{BuildHasher, Hasher};

/// What the handlers read requests against.
#[derive(Debug, Clone)]
pub struct Context {
    /// The bounds.
    pub limits: Limits,
    /// The models.
    pub model: ModelInfo,
}

/// An integer field within `lo..=hi`.
pub fn int_in(field: &str, value: i64, lo: i64, hi: i64) -> Result<usize, ApiError> {
    if value < lo || value > hi {
        return Err(ApiError::bad(
            field,
            format!("{field} must be between {lo} and {hi}; got {value}"),
        ));
    }
    Ok(value as usize)
}

/// A finite number within `lo..=hi`.
pub fn float_in(field: &str, value: f64, lo: f64, hi: f64) -> Result<f32, ApiError> {
    if !value.is_finite() || value < lo || value > hi {
        return Err(ApiError::bad(
            field,
            format!("{field} must be a number between {lo} and {hi}; got {value}"),
        ));
    }
    Ok(value as f32)
}

/// A prompt no longer than the limit.
pub fn text(field: &str, value: &str, limits: &Limits) -> Result<String, ApiError> {
    let n = value.chars().count();
    if n > limits.max_prompt_chars {
        return Err(ApiError::bad(
            field,
            format!(
                "{field} is {n} characters; the limit is {} (CLIP reads only the first 77 tokens)",
                limits.max_prompt_chars
            ),
        ));
    }
    if value.contains('\0') {
        return Err(ApiError::bad(
            field,
            format!("{field} contains a NUL character"),
        ));
    }
    Ok(value.to_string())
}

/// A request with its prompt and negative prompt checked.
pub fn prompted(
    prompt: &str,
    negative: &str,
    limits: &Limits,
) -> Result<GenerationRequest, ApiError> {
    let mut r = GenerationRequest::new(text("prompt", prompt, limits)?);
    r.negative_prompt = text("negative_prompt", negative, limits)?;
    Ok(r)
}

/// `steps`: absent gives the API's `default` (held to the limit), else 1 ..= the limit.
pub fn steps(value: Option<i64>, default: usize, limits: &Limits) -> Result<usize, ApiError> {
    let default = default.min(limits.max_steps) as i64;
    int_in(
        "steps",
        value.unwrap_or(default),
        1,
        limits.max_steps as i64,
    )
}

/// A seed: absent or −1 draws a random one; otherwise 0 ..= 2³² − 1 (Apple's `UInt32`, and
/// what NumPy's `RandomState` takes).
pub fn seed(field: &str, value: Option<i64>) -> Result<u64, ApiError> {
    match value {
        None | Some(-1) => Ok(random_seed()),
        Some(s) if (0..=u32::MAX as i64).contains(&s) => Ok(s as u64),
        Some(s) => Err(ApiError::bad(
            field,
            format!(
                "{field} must be between 0 and {} (or -1 for a random one); got {s}",
                u32::MAX
            ),
        )),
    }
}

/// A random seed in `0 ..= u32::MAX` from the standard library's per-process random keys.
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() & u32::MAX as u64
}

/// A scheduler by any of its names.
pub fn scheduler(field: &str, name: &str) -> Result<SchedulerKind, ApiError> {
    name.parse::<SchedulerKind>()
        .map_err(|e| ApiError::bad(field, e.to_string()))
}

/// A requested size must be the models' own (Core ML packages have fixed shapes).
pub fn size(
    field: &str,
    width: Option<i64>,
    height: Option<i64>,
    model: &ModelInfo,
) -> Result<(), ApiError> {
    let w = width.unwrap_or(model.width as i64);
    let h = height.unwrap_or(model.height as i64);
    if w != model.width as i64 || h != model.height as i64 {
        return Err(ApiError::bad(
            field,
            format!(
                "the models make {}x{} images and {w}x{h} was asked for; converted Core ML models have a fixed size (convert again with --latent-w/--latent-h for another)",
                model.width, model.height
            ),
        ));
    }
    Ok(())
}

/// The bytes of a base64 field; a `data:image/…;base64,` prefix is allowed.
pub fn base64_bytes(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    let payload = match value.split_once(";base64,") {
        Some((head, rest)) if head.starts_with("data:") => rest,
        _ => value,
    };
    let cleaned: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .map_err(|e| ApiError::bad(field, format!("{field} is not base64: {e}")))
}

/// A base64 PNG or JPEG, as RGB at the models' size: a starting image of another size is
/// resized (Lanczos, as A1111's "just resize") and a warning says so.
pub fn image(
    field: &str,
    value: &str,
    ctx: &Context,
    warnings: &mut Vec<String>,
) -> Result<RgbImage, ApiError> {
    let rgb = decoded(field, value, ctx)?.rgb;
    let (width, height) = (ctx.model.width, ctx.model.height);
    let data = to_model_size(field, rgb.data, rgb.width, rgb.height, 3, ctx, warnings);
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// A base64 mask (white = repaint) as luma at the models' size, inverted when asked.
pub fn mask(
    field: &str,
    value: &str,
    invert: bool,
    ctx: &Context,
    warnings: &mut Vec<String>,
) -> Result<GrayImage, ApiError> {
    let gray = decoded(field, value, ctx)?.luma();
    let data = to_model_size(field, gray.data, gray.width, gray.height, 1, ctx, warnings);
    let mut gray = GrayImage {
        width: ctx.model.width,
        height: ctx.model.height,
        data,
    };
    if invert {
        for v in &mut gray.data {
            *v = 255 - *v;
        }
    }
    Ok(gray)
}

/// Pixels at the models' size: resized (Lanczos, as A1111's "just resize") with a warning
/// when they are not.
fn to_model_size(
    field: &str,
    data: Vec<u8>,
    width: usize,
    height: usize,
    channels: usize,
    ctx: &Context,
    warnings: &mut Vec<String>,
) -> Vec<u8> {
    let (w, h) = (ctx.model.width, ctx.model.height);
    if (width, height) == (w, h) {
        return data;
    }
    warnings.push(format!(
        "{field} was {width}x{height} and was resized to the models' {w}x{h}"
    ));
    resize(&data, width, height, channels, w, h, Filter::Lanczos)
}

fn decoded(
    field: &str,
    value: &str,
    ctx: &Context,
) -> Result<sd_runtime::pipeline::image::LoadedImage, ApiError> {
    let bytes = base64_bytes(field, value)?;
    decode_image_within(&bytes, field, ctx.limits.max_image_side)
        .map_err(|e| ApiError::bad(field, e.to_string()))
}

/// The request needs the VAE encoder for a starting image.
pub fn require_image_to_image(field: &str, model: &ModelInfo) -> Result<(), ApiError> {
    if model.image_to_image {
        Ok(())
    } else {
        Err(ApiError::bad(
            field,
            format!(
                "the models in {} have no VAE encoder, so a starting image cannot be used (convert with --convert-vae-encoder)",
                model.folder.display()
            ),
        ))
    }
}

/// `count` generations of `base`, each with its own seed (`seed`, `seed + 1`, …, as A1111
/// numbers them), checked against the image limit.
pub fn one_seed_per_image(
    base: GenerationRequest,
    count: usize,
    count_field: &str,
    limits: &Limits,
) -> Result<Vec<GenerationRequest>, ApiError> {
    check_image_total(count_field, count * base.image_count, limits)?;
    Ok((0..count)
        .map(|i| GenerationRequest {
            seed: (base.seed + i as u64) & u32::MAX as u64,
            ..base.clone()
        })
        .collect())
}

/// The image total must be within the limit.
pub fn check_image_total(field: &str, total: usize, limits: &Limits) -> Result<(), ApiError> {
    if total == 0 || total > limits.max_images {
        return Err(ApiError::bad(
            field,
            format!(
                "{total} images were asked for; one request makes 1 to {}",
                limits.max_images
            ),
        ));
    }
    Ok(())
}

/// A job of these runs.
pub fn spec(runs: Vec<GenerationRequest>, save: bool, warnings: Vec<String>) -> JobSpec {
    JobSpec {
        runs,
        save,
        warnings,
    }
}
