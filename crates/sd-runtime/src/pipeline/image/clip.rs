//! The safety checker's `clip_input`: transformers' `CLIPImageProcessor` with the PIL backend
//! (`CLIPImageProcessorPil`; transformers 5 falls back to it from `CLIPImageProcessor` when
//! torchvision is not installed, and transformers 4's `CLIPImageProcessor` is the same code).

use std::path::Path;

use serde_json::Value;

use super::resample::{Filter, resize};
use super::{ImageError, Planar, Result, RgbImage};

/// OpenAI CLIP's normalization mean (transformers' `OPENAI_CLIP_MEAN`).
const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's normalization std (transformers' `OPENAI_CLIP_STD`).
const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How `size` resizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipSize {
    /// `{"shortest_edge": N}` (or a bare `N`): the shorter side becomes N, the longer one
    /// `int(N * long / short)` (transformers' `get_resize_output_image_size`).
    ShortestEdge(usize),
    /// `{"height": H, "width": W}`: resized to exactly that.
    Exact {
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
}

/// A `CLIPImageProcessor` configuration (`feature_extractor/preprocessor_config.json`) and its
/// `preprocess`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipImageProcessor {
    /// `do_resize`.
    pub do_resize: bool,
    /// `size`.
    pub size: ClipSize,
    /// `resample` (Pillow filter number; NEAREST is not supported).
    pub resample: Filter,
    /// `do_center_crop`.
    pub do_center_crop: bool,
    /// `crop_size` as (height, width).
    pub crop_size: (usize, usize),
    /// `do_rescale`.
    pub do_rescale: bool,
    /// `rescale_factor` (a Python float: the product is taken in float64, then cast to
    /// float32, as transformers' `rescale` does).
    pub rescale_factor: f64,
    /// `do_normalize`.
    pub do_normalize: bool,
    /// `image_mean` (as given; cast to float32 when used, as numpy does).
    pub image_mean: [f64; 3],
    /// `image_std`.
    pub image_std: [f64; 3],
    /// `do_convert_rgb` (images here are RGB already; kept for completeness).
    pub do_convert_rgb: bool,
}

impl Default for ClipImageProcessor {
    /// transformers' defaults, which are Stable Diffusion's safety checker configuration:
    /// shortest edge 224, BICUBIC, center crop 224x224, rescale 1/255, OpenAI CLIP mean/std.
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ClipSize::ShortestEdge(224),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_convert_rgb: true,
        }
    }
}

fn config_err(what: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Config {
        what: what.to_string(),
        detail: detail.into(),
    }
}

fn as_size(v: &Value, key: &str, what: &str) -> Result<usize> {
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| config_err(what, format!("`{key}` must be a positive integer, got {v}")))
}

fn as_bool(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
    what: &str,
) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(config_err(
            what,
            format!("`{key}` must be true or false, got {v}"),
        )),
    }
}

fn as_triple(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: [f64; 3],
    what: &str,
) -> Result<[f64; 3]> {
    let bad = || {
        config_err(
            what,
            format!("`{key}` must be a number or a list of 3 numbers"),
        )
    };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => {
            let x = n.as_f64().ok_or_else(bad)?;
            Ok([x; 3])
        }
        Some(Value::Array(items)) if items.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, v) in out.iter_mut().zip(items) {
                *o = v.as_f64().ok_or_else(bad)?;
            }
            Ok(out)
        }
        Some(_) => Err(bad()),
    }
}

impl ClipImageProcessor {
    /// Parses a `preprocessor_config.json` text; `what` names it in errors. Missing keys take
    /// `CLIPImageProcessor`'s defaults; `size` and `crop_size` may be dictionaries or bare
    /// integers (the older `CLIPFeatureExtractor` files of the SD 1.x checkpoints).
    pub fn from_json_str(text: &str, what: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| config_err(what, format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| config_err(what, "not a JSON object"))?;
        let d = Self::default();
        let size = match obj.get("size") {
            None | Some(Value::Null) => d.size,
            Some(v @ Value::Number(_)) => ClipSize::ShortestEdge(as_size(v, "size", what)?),
            Some(Value::Object(m)) => {
                if m.contains_key("longest_edge") || m.contains_key("max_height") {
                    return Err(config_err(
                        what,
                        format!(
                            "`size` {} is not supported (shortest_edge or height/width)",
                            Value::Object(m.clone())
                        ),
                    ));
                }
                if let Some(v) = m.get("shortest_edge") {
                    ClipSize::ShortestEdge(as_size(v, "size.shortest_edge", what)?)
                } else if let (Some(h), Some(w)) = (m.get("height"), m.get("width")) {
                    ClipSize::Exact {
                        height: as_size(h, "size.height", what)?,
                        width: as_size(w, "size.width", what)?,
                    }
                } else {
                    return Err(config_err(
                        what,
                        "`size` needs `shortest_edge` or `height` and `width`",
                    ));
                }
            }
            Some(v) => return Err(config_err(what, format!("`size` {v} is not supported"))),
        };
        let crop_size = match obj.get("crop_size") {
            None | Some(Value::Null) => d.crop_size,
            Some(v @ Value::Number(_)) => {
                let n = as_size(v, "crop_size", what)?;
                (n, n)
            }
            Some(Value::Object(m)) => match (m.get("height"), m.get("width")) {
                (Some(h), Some(w)) => (
                    as_size(h, "crop_size.height", what)?,
                    as_size(w, "crop_size.width", what)?,
                ),
                _ => return Err(config_err(what, "`crop_size` needs `height` and `width`")),
            },
            Some(v) => {
                return Err(config_err(
                    what,
                    format!("`crop_size` {v} is not supported"),
                ));
            }
        };
        let resample = match obj.get("resample") {
            None | Some(Value::Null) => d.resample,
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    config_err(what, format!("`resample` must be an integer, got {v}"))
                })?;
                Filter::from_pil(n as u32).ok_or_else(|| {
                    config_err(
                        what,
                        format!(
                            "`resample` {n} is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, \
                             4 BOX, 5 HAMMING)"
                        ),
                    )
                })?
            }
        };
        let rescale_factor = match obj.get("rescale_factor") {
            None | Some(Value::Null) => d.rescale_factor,
            Some(v) => v.as_f64().ok_or_else(|| {
                config_err(what, format!("`rescale_factor` must be a number, got {v}"))
            })?,
        };
        let image_std = as_triple(obj, "image_std", d.image_std, what)?;
        if image_std.contains(&0.0) {
            return Err(config_err(what, "`image_std` has a zero"));
        }
        Ok(Self {
            do_resize: as_bool(obj, "do_resize", d.do_resize, what)?,
            size,
            resample,
            do_center_crop: as_bool(obj, "do_center_crop", d.do_center_crop, what)?,
            crop_size,
            do_rescale: as_bool(obj, "do_rescale", d.do_rescale, what)?,
            rescale_factor,
            do_normalize: as_bool(obj, "do_normalize", d.do_normalize, what)?,
            image_mean: as_triple(obj, "image_mean", d.image_mean, what)?,
            image_std,
            do_convert_rgb: as_bool(obj, "do_convert_rgb", d.do_convert_rgb, what)?,
        })
    }

    /// Reads a `preprocessor_config.json` file (at most 1 MiB, a regular file).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = super::load::read_input_file(path, 1 << 20)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| config_err(&path.display().to_string(), "not UTF-8 text"))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// The size (width, height) an image of `width` x `height` is resized to (before the crop).
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        if !self.do_resize {
            return (width, height);
        }
        match self.size {
            ClipSize::Exact {
                height: h,
                width: w,
            } => (w, h),
            ClipSize::ShortestEdge(n) => {
                // get_resize_output_image_size(default_to_square=False): Python's
                // `int(n * long / short)` (true division in float64, truncated).
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = ((n * long) as f64 / short as f64) as usize;
                if width <= height {
                    (n, new_long)
                } else {
                    (new_long, n)
                }
            }
        }
    }

    /// The output size (width, height) for an input of `width` x `height`.
    pub fn output_size(&self, width: usize, height: usize) -> (usize, usize) {
        if self.do_center_crop {
            (self.crop_size.1, self.crop_size.0)
        } else {
            self.resized_size(width, height)
        }
    }

    /// `processor(image, return_tensors="np").pixel_values[0]`: float32 (3, H, W). Steps, as the
    /// PIL backend runs them: Pillow resize in `u8`, center crop (zero-padded where the image is
    /// smaller than the crop), `(u8 as f64 * rescale_factor) as f32`, `(x - mean) / std` in
    /// float32.
    pub fn preprocess(&self, image: &RgbImage) -> Result<Planar> {
        image.validate()?;
        let (rw, rh) = self.resized_size(image.width, image.height);
        if rw == 0 || rh == 0 {
            return Err(ImageError::InvalidData {
                what: "safety checker input".into(),
                detail: format!("{}x{} resizes to {rw}x{rh}", image.width, image.height),
            });
        }
        let resized = if (rw, rh) == (image.width, image.height) {
            std::borrow::Cow::Borrowed(&image.data[..])
        } else {
            std::borrow::Cow::Owned(resize(
                &image.data,
                image.width,
                image.height,
                3,
                rw,
                rh,
                self.resample,
            ))
        };
        let (cw, ch, pixels) = if self.do_center_crop {
            let (ch, cw) = self.crop_size;
            (cw, ch, center_crop(&resized, rw, rh, cw, ch))
        } else {
            (rw, rh, resized.into_owned())
        };
        let plane = cw * ch;
        let mean = self.image_mean.map(|m| m as f32);
        let std = self.image_std.map(|s| s as f32);
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let mut v = if self.do_rescale {
                    (f64::from(px[c]) * self.rescale_factor) as f32
                } else {
                    f32::from(px[c])
                };
                if self.do_normalize {
                    v = (v - mean[c]) / std[c];
                }
                data[c * plane + i] = v;
            }
        }
        Ok(Planar {
            channels: 3,
            height: ch,
            width: cw,
            data,
        })
    }
}

/// transformers' `center_crop` on an interleaved RGB image: `top = (h - crop_h) // 2` (floor
/// division), likewise `left`; where the crop is larger than the image, the image is first
/// zero-padded, `ceil((new - old) / 2)` before.
fn center_crop(src: &[u8], width: usize, height: usize, cw: usize, ch: usize) -> Vec<u8> {
    let (w, h) = (width as i64, height as i64);
    let (cw_i, ch_i) = (cw as i64, ch as i64);
    let top = (h - ch_i).div_euclid(2);
    let left = (w - cw_i).div_euclid(2);
    let mut out = vec![0u8; cw * ch * 3];
    if top >= 0 && left >= 0 && top + ch_i <= h && left + cw_i <= w {
        for y in 0..ch {
            let sy = y + top as usize;
            let s = &src[(sy * width + left as usize) * 3..][..cw * 3];
            out[y * cw * 3..][..cw * 3].copy_from_slice(s);
        }
        return out;
    }
    // Padded path.
    let new_h = ch_i.max(h);
    let new_w = cw_i.max(w);
    let top_pad = (new_h - h + 1) / 2; // ceil of a non-negative half
    let left_pad = (new_w - w + 1) / 2;
    let top = top + top_pad;
    let left = left + left_pad;
    // Output pixel (y, x) is padded pixel (top + y, left + x) = source (top + y - top_pad, ...).
    for y in 0..ch_i {
        for x in 0..cw_i {
            let py = top + y;
            let px = left + x;
            if py < 0 || px < 0 || py >= new_h || px >= new_w {
                continue;
            }
            let sy = py - top_pad;
            let sx = px - left_pad;
            if sy < 0 || sx < 0 || sy >= h || sx >= w {
                continue;
            }
            let si = ((sy * w + sx) * 3) as usize;
            let di = ((y * cw_i + x) * 3) as usize;
            out[di..di + 3].copy_from_slice(&src[si..si + 3]);
        }
    }
    out
}
