//! Pixel conversions between `u8` images and the models' float32 tensors, with diffusers'
//! arithmetic (float32, operation by operation, so the results are bit for bit the same).

use super::{GrayImage, ImageError, Planar, Result, RgbImage, check_len, wrong_size};

impl RgbImage {
    /// The VAE encoder's input, as diffusers' `VaeImageProcessor.preprocess` makes it from a PIL
    /// image: `np.array(image).astype(np.float32) / 255.0`, then `2.0 * x - 1.0` — float32 CHW in
    /// [-1, 1]. (No resizing: the pipeline requires the size it generates at; see
    /// [`RgbImage::expect_size`].)
    pub fn to_vae_input(&self) -> Planar {
        let plane = self.width * self.height;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let unit = f32::from(px[c]) / 255.0;
                data[c * plane + i] = 2.0 * unit - 1.0;
            }
        }
        Planar {
            channels: 3,
            height: self.height,
            width: self.width,
            data,
        }
    }

    /// RGB / 255 as float32 CHW in [0, 1]: diffusers' ControlNet image processor
    /// (`do_normalize=False`) and Apple's `planarRGBShapedArray(minValue: 0, maxValue: 1)` for an
    /// opaque image.
    pub fn to_unit_planar(&self) -> Planar {
        let plane = self.width * self.height;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        Planar {
            channels: 3,
            height: self.height,
            width: self.width,
            data,
        }
    }

    /// The image diffusers saves from a decoded VAE output `chw` (3, `height`, `width`) in
    /// [-1, 1]: `VaeImageProcessor.postprocess` (`(x * 0.5 + 0.5).clamp(0, 1)`) then
    /// `numpy_to_pil` (`(v * 255).round().astype("uint8")`, numpy's round: half to even), all in
    /// float32. NaN pixels (an fp16 VAE overflowing) become 0, as numpy's cast gives on x86, and
    /// are reported with a `tracing` warning.
    pub fn from_vae_output(chw: &[f32], width: usize, height: usize) -> Result<Self> {
        check_len("VAE output", width, height, 3, chw.len())?;
        let plane = width * height;
        let mut data = vec![0u8; 3 * plane];
        let mut nans = 0usize;
        for c in 0..3 {
            for i in 0..plane {
                let x = chw[c * plane + i];
                if x.is_nan() {
                    nans += 1;
                }
                data[i * 3 + c] = postprocess_value(x);
            }
        }
        if nans > 0 {
            tracing::warn!(
                nans,
                "VAE output has NaN values (written as 0); an fp16 VAE decoder can overflow"
            );
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Pillow's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point,
    /// `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16` (so gray pixels keep their value).
    pub fn to_luma(&self) -> GrayImage {
        let data = self
            .data
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect();
        GrayImage {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// One value of diffusers' postprocess: `round_half_even((x * 0.5 + 0.5).clamp(0, 1) * 255)`.
pub(crate) fn postprocess_value(x: f32) -> u8 {
    let unit = (x * 0.5 + 0.5).clamp(0.0, 1.0);
    // NaN survives clamp; `as u8` maps it to 0.
    (unit * 255.0).round_ties_even() as u8
}

/// Pillow's RGB -> L conversion (`L24` in libImaging/Convert.c).
pub(crate) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

impl GrayImage {
    /// The inpainting mask as diffusers' `StableDiffusionInpaintPipeline` mask processor makes it
    /// (`do_convert_grayscale`, `do_binarize`, no normalization): `v / 255`, then `< 0.5 -> 0`,
    /// else 1 — float32 (1, H, W) in {0, 1}, 1 where the image is to be repainted. (`v / 255 <
    /// 0.5` exactly when `v <= 127`.)
    pub fn to_inpaint_mask(&self) -> Planar {
        let data = self
            .data
            .iter()
            .map(|&v| if f32::from(v) / 255.0 < 0.5 { 0.0 } else { 1.0 })
            .collect();
        Planar {
            channels: 1,
            height: self.height,
            width: self.width,
            data,
        }
    }
}

/// Apple's inpainting ControlNet conditioning (`CGImage.planarRGBShapedArray(minValue: 0,
/// maxValue: 1)`): RGB / 255 in [0, 1], float32 CHW, and -1 in all three channels where
/// `alpha` is 0 (the pixels to repaint). `alpha` must have the image's size.
pub fn controlnet_inpaint_conditioning(rgb: &RgbImage, alpha: &GrayImage) -> Result<Planar> {
    rgb.validate()?;
    alpha.validate()?;
    if (alpha.width, alpha.height) != (rgb.width, rgb.height) {
        return Err(wrong_size(
            "alpha mask",
            (rgb.width, rgb.height),
            (alpha.width, alpha.height),
        ));
    }
    let mut planar = rgb.to_unit_planar();
    let plane = rgb.width * rgb.height;
    for (i, &a) in alpha.data.iter().enumerate() {
        if a == 0 {
            for c in 0..3 {
                planar.data[c * plane + i] = -1.0;
            }
        }
    }
    Ok(planar)
}

/// A ControlNet conditioning image for an opaque control image: RGB / 255, float32 CHW (diffusers'
/// control image processor; Apple's for an image without transparent pixels).
pub fn controlnet_conditioning(rgb: &RgbImage) -> Planar {
    rgb.to_unit_planar()
}

/// The safety checker's `images` input (1, H, W, 3) from a decoded VAE output `chw`
/// (3, `height`, `width`) in [-1, 1]: `(x / 2 + 0.5).clamp(0, 1)` in float32, channels last —
/// what Apple's pipeline (and diffusers' `decode_latents`) passes as `images`.
pub fn safety_checker_images(chw: &[f32], width: usize, height: usize) -> Result<Vec<f32>> {
    check_len("VAE output", width, height, 3, chw.len())?;
    let plane = width * height;
    let mut out = vec![0f32; 3 * plane];
    for c in 0..3 {
        for i in 0..plane {
            out[i * 3 + c] = (chw[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
        }
    }
    Ok(out)
}

/// The mask at latent resolution as diffusers' inpainting pipeline makes it:
/// `torch.nn.functional.interpolate(mask, size=(h // factor, w // factor))` (mode "nearest":
/// source index `min(floor(dst * (in / out)), in - 1)` with the scale in float32).
pub fn mask_to_latent_size(mask: &Planar, factor: usize) -> Result<Planar> {
    check_len(
        "mask",
        mask.width,
        mask.height,
        mask.channels,
        mask.data.len(),
    )?;
    if factor == 0 || mask.width < factor || mask.height < factor {
        return Err(ImageError::InvalidData {
            what: "mask".into(),
            detail: format!(
                "{}x{} cannot be reduced by a factor of {factor}",
                mask.width, mask.height
            ),
        });
    }
    let (ow, oh) = (mask.width / factor, mask.height / factor);
    let xs: Vec<usize> = (0..ow).map(|x| nearest_index(x, mask.width, ow)).collect();
    let ys: Vec<usize> = (0..oh).map(|y| nearest_index(y, mask.height, oh)).collect();
    let mut data = Vec::with_capacity(mask.channels * ow * oh);
    for c in 0..mask.channels {
        let plane = &mask.data[c * mask.width * mask.height..(c + 1) * mask.width * mask.height];
        for &sy in &ys {
            for &sx in &xs {
                data.push(plane[sy * mask.width + sx]);
            }
        }
    }
    Ok(Planar {
        channels: mask.channels,
        height: oh,
        width: ow,
        data,
    })
}

/// ATen's `nearest_idx` (UpSample.h) without explicit scales.
fn nearest_index(dst: usize, input: usize, output: usize) -> usize {
    if output == input {
        dst
    } else if output == 2 * input {
        dst >> 1
    } else {
        let scale = input as f32 / output as f32;
        (((dst as f32) * scale).floor() as usize).min(input - 1)
    }
}

/// The masked image of diffusers' inpainting pipeline: `image * (mask < 0.5)` on the VAE input
/// (`image` (3, H, W) in [-1, 1], `mask` (1, H, W) in {0, 1}): repainted pixels become 0.
pub fn masked_image(image: &Planar, mask: &Planar) -> Result<Planar> {
    if mask.channels != 1 || (mask.width, mask.height) != (image.width, image.height) {
        return Err(wrong_size(
            "mask",
            (image.width, image.height),
            (mask.width, mask.height),
        ));
    }
    let plane = image.width * image.height;
    check_len(
        "image",
        image.width,
        image.height,
        image.channels,
        image.data.len(),
    )?;
    check_len("mask", mask.width, mask.height, 1, mask.data.len())?;
    let mut out = image.clone();
    for c in 0..image.channels {
        for i in 0..plane {
            let keep = if mask.data[i] < 0.5 { 1.0 } else { 0.0 };
            out.data[c * plane + i] *= keep;
        }
    }
    Ok(out)
}
