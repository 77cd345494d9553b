//! The generation loop: prompt encoding, initial latents (text-to-image, image-to-image,
//! inpainting), the denoising steps with classifier-free guidance and ControlNets, decoding and
//! the safety check — in the order diffusers' pipelines run them, drawing noise as they do.

use super::batched::{Row, Staged};
use super::error::{PipelineError, Result};
use super::image::RgbImage;
use super::image::{
    ClipImageProcessor, ClipSize, mask_to_latent_size, masked_image, safety_checker_images,
};
use super::latents::{guide, sample_encoded, to_channels_first};
use super::request::{GenerationRequest, MAX_IMAGES, MAX_STEPS};
use super::{Part, Pipeline};
use crate::RtBackend;
use sd_mil::signature::{safety_checker, text_encoder, unet, vae_decoder, vae_encoder};
use sd_sched::NoiseSource;
use std::time::{Duration, Instant};

/// What the progress callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop at this point: [`Pipeline::generate`] returns [`PipelineError::Cancelled`].
    Cancel,
}

/// Where a generation stands, given to the progress callback after every step.
#[derive(Debug)]
pub struct Progress<'a> {
    /// Steps done.
    pub step: usize,
    /// Steps this generation runs.
    pub total: usize,
    /// The timestep just run.
    pub timestep: f32,
    /// Time since the denoising loop started.
    pub elapsed: Duration,
    /// The latents after this step, every image's in turn (`image_count × 4 × h × w`).
    pub latents: &'a [f32],
    /// Decoded current latents, one per image, every `preview_every` steps.
    pub previews: Option<&'a [RgbImage]>,
}

/// The safety checker's verdict on one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyVerdict {
    /// Checked and clean.
    Clean,
    /// Checked and flagged: the image is withheld.
    Flagged,
    /// Not checked (disabled, or the folder has no safety checker).
    NotChecked,
}

/// One generated image.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    /// Its index in the request (0-based).
    pub index: usize,
    /// The picture; `None` when the safety checker flagged it.
    pub image: Option<RgbImage>,
    /// The safety checker's verdict.
    pub safety: SafetyVerdict,
    /// The final latents (before the VAE scale is undone), `latent_shape` row-major.
    pub latents: Vec<f32>,
}

/// What [`Pipeline::generate`] returns.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The images, in request order.
    pub images: Vec<GeneratedImage>,
    /// One image's latent shape `[1, 4, h, w]`.
    pub latent_shape: [usize; 4],
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// The timestep of every UNet call, in order.
    pub timesteps: Vec<f32>,
    /// The latents the loop started from, every image's in turn (text-to-image: the noise
    /// times the scheduler's initial sigma; image-to-image: the noised image latents).
    pub initial_latents: Vec<f32>,
    /// Things the user should know (a truncated prompt, an empty prompt).
    pub warnings: Vec<String>,
    /// Time in the denoising loop.
    pub denoise_time: Duration,
}

/// Per-image extra UNet input channels (inpainting: mask ‖ masked-image latents).
struct InpaintInputs {
    /// `1 × h × w` mask followed by `4 × h × w` masked-image latents.
    extra: Vec<f32>,
}

/// 4-channel-UNet inpainting: the known region is pinned to the noised image latents.
struct Blend {
    image_latents: Vec<f32>,
    noise: Vec<f32>,
    /// The latent-size mask, `h × w`.
    mask: Vec<f32>,
}

impl<B: RtBackend> Pipeline<B> {
    /// The `(width, height)` of the images these models make (the VAE decoder's output), for
    /// callers that need it before generating (a form's defaults, an API's size check).
    pub fn output_size(&mut self) -> Result<(usize, usize)> {
        self.ensure(Part::VaeDecoder)?;
        let (height, width) = output_hw(self.model(Part::VaeDecoder), vae_decoder::IMAGE)?;
        Ok((width, height))
    }

    /// Makes `request.image_count` images. `progress` is called after every step and may
    /// cancel.
    pub fn generate(
        &mut self,
        request: &GenerationRequest,
        progress: &mut dyn FnMut(&Progress<'_>) -> Control,
    ) -> Result<Generation> {
        let r = request;
        validate(r)?;
        let mut warnings = Vec::new();
        let guided = r.guided();
        let masked = r.mask.is_some();
        let use_control = !r.controlnets.is_empty();
        let unet_part = if use_control {
            Part::ControlledUnet
        } else {
            Part::Unet
        };
        if r.mask.is_some() && r.image.is_none() {
            return Err(PipelineError::bad(
                "mask",
                "a mask needs a starting image (the picture to inpaint)",
            ));
        }

        // Every named ControlNet must be in the folder before any work is done.
        for c in &r.controlnets {
            self.resources.controlnet(&c.name)?;
        }

        // 1. Prompt embeddings, in the UNet's (C, 1, S) layout.
        self.ensure(Part::TextEncoder)?;
        let (cond, seq, channels) = self.encode_prompt(&r.prompt, "prompt", &mut warnings)?;
        let uncond = if guided {
            Some(
                self.encode_prompt(&r.negative_prompt, "negative prompt", &mut Vec::new())?
                    .0,
            )
        } else {
            None
        };
        self.release(Part::TextEncoder);

        // 2. Geometry from the models.
        self.ensure(unet_part)?;
        self.ensure(Part::VaeDecoder)?;
        let unet = self.model(unet_part);
        let sample_shape =
            unet.first_input_shape(Some(unet::SAMPLE))
                .ok_or_else(|| PipelineError::Signature {
                    model: unet.label.clone(),
                    reason: "no `sample` input".into(),
                })?;
        let ehs_shape = unet
            .first_input_shape(Some(unet::ENCODER_HIDDEN_STATES))
            .unwrap_or_default();
        if sample_shape.len() != 4 || ehs_shape.len() != 4 {
            return Err(PipelineError::Signature {
                model: unet.label.clone(),
                reason: format!(
                    "`sample` {sample_shape:?} and `encoder_hidden_states` {ehs_shape:?} are not 4-D"
                ),
            });
        }
        if ehs_shape[1] != channels || ehs_shape[3] != seq {
            return Err(PipelineError::Signature {
                model: unet.label.clone(),
                reason: format!(
                    "`encoder_hidden_states` is {ehs_shape:?} but the text encoder gives {channels} channels × {seq} tokens: the models are from different checkpoints"
                ),
            });
        }
        let unet_channels = sample_shape[1];
        let (lh, lw) = (sample_shape[2], sample_shape[3]);
        let (height, width) = self.checked_image_size(lh, lw)?;
        check_size("width", r.width, width)?;
        check_size("height", r.height, height)?;
        let latent_channels = 4;
        let inpaint_unet = unet_channels == latent_channels + 1 + latent_channels;
        if inpaint_unet && !masked {
            return Err(PipelineError::bad(
                "mask",
                format!(
                    "the UNet is an inpainting UNet ({unet_channels} input channels): give a starting image and a mask"
                ),
            ));
        }
        if !inpaint_unet && unet_channels != latent_channels {
            return Err(PipelineError::Signature {
                model: unet.label.clone(),
                reason: format!("`sample` has {unet_channels} channels; 4 or 9 are supported"),
            });
        }
        let per_image = latent_channels * lh * lw;
        let n = r.image_count;
        let ehs_per = channels * seq;
        debug_assert_eq!(cond.len(), ehs_per);

        // 3. Scheduler and noise.
        let mut scheduler = r.scheduler.build(&self.scheduler_config)?;
        scheduler.set_timesteps(r.steps)?;
        let mut noise: Box<dyn NoiseSource> = r.rng.source(r.seed);
        let all_timesteps = scheduler.timesteps().to_vec();

        // 4. Initial latents, as each diffusers pipeline prepares them.
        let start_image = match &r.image {
            Some(img) => {
                img.expect_size(width, height)?;
                Some(img.to_vae_input())
            }
            None => None,
        };
        let (mut latents, timesteps, inpaint, blend) = match (&start_image, &r.mask) {
            (None, _) => {
                let l = sd_sched::pipeline::initial_latents(
                    &mut noise,
                    n * per_image,
                    scheduler.init_noise_sigma(),
                );
                (l, all_timesteps.clone(), None, None)
            }
            (Some(image), None) => {
                let (ts, t0) = strength_schedule(scheduler.as_mut(), &all_timesteps, r)?;
                let moments = self.encode_image(&image.data)?;
                let one = sample_encoded(&moments, &mut noise, self.vae_scaling_factor);
                let init = one.repeat(n);
                let eps = noise.randn(n * per_image);
                let l = scheduler.add_noise(&init, &eps, t0)?;
                (l, ts, None, None)
            }
            (Some(image), Some(mask)) => {
                mask.expect_size(width, height)?;
                let (ts, t0) = strength_schedule(scheduler.as_mut(), &all_timesteps, r)?;
                let full_strength = r.strength >= 1.0;
                // prepare_latents: the image latents (drawn) when needed, then the noise.
                let image_latents = if !inpaint_unet || !full_strength {
                    let moments = self.encode_image(&image.data)?;
                    Some(sample_encoded(&moments, &mut noise, self.vae_scaling_factor).repeat(n))
                } else {
                    None
                };
                let eps = noise.randn(n * per_image);
                let l = match (&image_latents, full_strength) {
                    (Some(il), false) => scheduler.add_noise(il, &eps, t0)?,
                    _ => {
                        let s = scheduler.init_noise_sigma();
                        eps.iter().map(|v| v * s).collect()
                    }
                };
                // prepare_mask_latents: the mask at latent size, the masked image encoded.
                let full_mask = mask.to_inpaint_mask();
                let masked = masked_image(image, &full_mask)?;
                let small_mask = mask_to_latent_size(&full_mask, height / lh)?.data;
                let moments = self.encode_image(&masked.data)?;
                let masked_latents = sample_encoded(&moments, &mut noise, self.vae_scaling_factor);
                if inpaint_unet {
                    let mut extra = small_mask.clone();
                    extra.extend_from_slice(&masked_latents);
                    (l, ts, Some(InpaintInputs { extra }), None)
                } else {
                    let blend = Blend {
                        image_latents: image_latents.unwrap_or_default(),
                        noise: eps,
                        mask: small_mask,
                    };
                    (l, ts, None, Some(blend))
                }
            }
        };
        self.release(Part::VaeEncoder);

        // 5. ControlNet conditioning.
        let mut controls = Vec::new();
        for c in &r.controlnets {
            let key = self.ensure_controlnet(&c.name)?;
            if c.width != width || c.height != height {
                return Err(PipelineError::bad(
                    "controlnet",
                    format!(
                        "the conditioning image of `{}` is {}x{}; the models make {width}x{height}",
                        c.name, c.width, c.height
                    ),
                ));
            }
            controls.push((key, c.conditioning.clone(), c.scale));
        }

        // 6. The denoising loop.
        let initial_latents = latents.clone();
        let started = Instant::now();
        let total = timesteps.len();
        let mut unet_timesteps = Vec::with_capacity(total);
        for (i, &t) in timesteps.iter().enumerate() {
            let scaled = scheduler.scale_model_input(&latents, t)?;
            let mut rows = Vec::new();
            for k in 0..n {
                let mut sample = scaled[k * per_image..(k + 1) * per_image].to_vec();
                if let Some(inp) = &inpaint {
                    sample.extend_from_slice(&inp.extra);
                }
                let mut push = |ehs: &[f32]| {
                    rows.push(Row::from([
                        (unet::SAMPLE.to_string(), sample.clone()),
                        (unet::TIMESTEP.to_string(), vec![t]),
                        (unet::ENCODER_HIDDEN_STATES.to_string(), ehs.to_vec()),
                    ]))
                };
                if let Some(u) = &uncond {
                    push(u);
                }
                push(&cond);
            }
            for (key, cond_image, scale) in &controls {
                let net = &self.controlnets[key];
                let mut inputs = rows.clone();
                for row in &mut inputs {
                    row.insert(unet::CONTROLNET_COND.into(), cond_image.clone());
                    if let Some(s) = row.get_mut(unet::SAMPLE) {
                        s.truncate(per_image);
                    }
                }
                let residuals = net.predict_rows(&inputs)?;
                for (row, res) in rows.iter_mut().zip(residuals) {
                    for (k, v) in res {
                        let slot = row.entry(k).or_insert_with(|| vec![0.0; v.len()]);
                        for (a, b) in slot.iter_mut().zip(&v) {
                            *a += b * scale;
                        }
                    }
                }
            }
            let out = self.model(unet_part).predict_rows(&rows)?;
            let mut noise_pred = Vec::with_capacity(n * per_image);
            let per_row = if guided { 2 } else { 1 };
            for k in 0..n {
                let pick = |j: usize| -> Result<&Vec<f32>> {
                    out[k * per_row + j].get(unet::NOISE_PRED).ok_or_else(|| {
                        PipelineError::Signature {
                            model: "UNet".into(),
                            reason: "no `noise_pred` output".into(),
                        }
                    })
                };
                if guided {
                    noise_pred.extend(guide(pick(0)?, pick(1)?, r.guidance_scale));
                } else {
                    noise_pred.extend_from_slice(pick(0)?);
                }
            }
            if noise_pred.len() != latents.len() {
                return Err(PipelineError::Signature {
                    model: "UNet".into(),
                    reason: format!(
                        "`noise_pred` has {} values per image, the latents {per_image}",
                        noise_pred.len() / n
                    ),
                });
            }
            latents = scheduler
                .step(&noise_pred, t, &latents, &mut noise)?
                .prev_sample;
            if let Some(b) = &blend {
                let proper = match timesteps.get(i + 1) {
                    Some(&next) => scheduler.add_noise(&b.image_latents, &b.noise, next)?,
                    None => b.image_latents.clone(),
                };
                let hw = lh * lw;
                for (j, v) in latents.iter_mut().enumerate() {
                    let m = b.mask[j % hw];
                    *v = (1.0 - m) * proper[j] + m * *v;
                }
            }
            unet_timesteps.push(t);
            let previews = if r.preview_every > 0 && (i + 1) % r.preview_every == 0 && i + 1 < total
            {
                let decoded = self.decode_all(&latents, n, per_image)?;
                Some(decoded.into_iter().map(|(p, _)| p).collect::<Vec<_>>())
            } else {
                None
            };
            let p = Progress {
                step: i + 1,
                total,
                timestep: t,
                elapsed: started.elapsed(),
                latents: &latents,
                previews: previews.as_deref(),
            };
            if progress(&p) == Control::Cancel {
                return Err(PipelineError::Cancelled { step: i + 1, total });
            }
        }
        let denoise_time = started.elapsed();
        self.release(unet_part);
        if self.options.reduce_memory {
            self.controlnets.clear();
        }

        // 7. Decode, then the safety check.
        let pictures = self.decode_all(&latents, n, per_image)?;
        self.release(Part::VaeDecoder);
        let mut images = Vec::with_capacity(n);
        for (k, (picture, decoded)) in pictures.into_iter().enumerate() {
            let verdict = if r.safety_check && self.resources.safety_checker.is_some() {
                if self.check_safety(&picture, &decoded)? {
                    SafetyVerdict::Flagged
                } else {
                    SafetyVerdict::Clean
                }
            } else {
                SafetyVerdict::NotChecked
            };
            images.push(GeneratedImage {
                index: k,
                image: (verdict != SafetyVerdict::Flagged).then_some(picture),
                safety: verdict,
                latents: latents[k * per_image..(k + 1) * per_image].to_vec(),
            });
        }
        self.release(Part::SafetyChecker);
        Ok(Generation {
            images,
            latent_shape: [1, latent_channels, lh, lw],
            width,
            height,
            timesteps: unet_timesteps,
            initial_latents,
            warnings,
            denoise_time,
        })
    }

    /// Tokenizes and encodes one prompt: `(states in (C, 1, S), S, C)`.
    fn encode_prompt(
        &mut self,
        text: &str,
        what: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<f32>, usize, usize)> {
        let encoded = self.tokenizer.encode(text);
        if let Some(dropped) = &encoded.dropped_text {
            warnings.push(format!(
                "the {what} is {} tokens, over the text encoder's {}; dropped: \"{dropped}\"",
                encoded.untruncated_len,
                self.tokenizer.max_len()
            ));
        }
        if text.trim().is_empty() && what == "prompt" {
            warnings.push("the prompt is empty: the image follows no text".into());
        }
        let te = self.model(Part::TextEncoder);
        let ids = encoded.as_f32();
        let seq = ids.len();
        let out = te.predict_rows(&[Row::from([(text_encoder::INPUT_IDS.to_string(), ids)])])?;
        let states = out[0].get(text_encoder::LAST_HIDDEN_STATE).ok_or_else(|| {
            PipelineError::Signature {
                model: "text encoder".into(),
                reason: "no `last_hidden_state` output".into(),
            }
        })?;
        let channels = states.len() / seq.max(1);
        Ok((to_channels_first(states, seq, channels), seq, channels))
    }

    /// The image size the VAE decoder makes from `lh × lw` latents.
    fn checked_image_size(&self, lh: usize, lw: usize) -> Result<(usize, usize)> {
        let vae = self.model(Part::VaeDecoder);
        let z = vae
            .first_input_shape(Some(vae_decoder::Z))
            .unwrap_or_default();
        if z.len() != 4 || z[2] != lh || z[3] != lw {
            return Err(PipelineError::Signature {
                model: "VAE decoder".into(),
                reason: format!(
                    "`z` is {z:?} but the UNet works on {lh}x{lw} latents: the models were converted for different sizes"
                ),
            });
        }
        output_hw(vae, vae_decoder::IMAGE)
    }

    /// The VAE encoder's moments for one `(3, H, W)` image in [−1, 1].
    fn encode_image(&mut self, image: &[f32]) -> Result<Vec<f32>> {
        self.ensure(Part::VaeEncoder)?;
        let enc = self.model(Part::VaeEncoder);
        let out = enc.predict_rows(&[Row::from([(vae_encoder::X.to_string(), image.to_vec())])])?;
        out[0]
            .get(vae_encoder::LATENT)
            .cloned()
            .ok_or_else(|| PipelineError::Signature {
                model: "VAE encoder".into(),
                reason: "no `latent` output".into(),
            })
    }

    /// Decodes every image's latents (divided by the VAE scale): each picture with the
    /// decoder's float output `(3, H, W)` in [−1, 1].
    fn decode_all(
        &mut self,
        latents: &[f32],
        n: usize,
        per_image: usize,
    ) -> Result<Vec<(RgbImage, Vec<f32>)>> {
        self.ensure(Part::VaeDecoder)?;
        let scale = self.vae_scaling_factor;
        let rows: Vec<Row> = (0..n)
            .map(|k| {
                let z = latents[k * per_image..(k + 1) * per_image]
                    .iter()
                    .map(|v| v / scale)
                    .collect();
                Row::from([(vae_decoder::Z.to_string(), z)])
            })
            .collect();
        let vae = self.model(Part::VaeDecoder);
        let (height, width) = output_hw(vae, vae_decoder::IMAGE)?;
        let out = vae.predict_rows(&rows)?;
        out.into_iter()
            .map(|mut row| {
                let chw =
                    row.remove(vae_decoder::IMAGE)
                        .ok_or_else(|| PipelineError::Signature {
                            model: "VAE decoder".into(),
                            reason: "no `image` output".into(),
                        })?;
                Ok((RgbImage::from_vae_output(&chw, width, height)?, chw))
            })
            .collect()
    }

    /// Runs the safety checker on one picture (`decoded`: the VAE's float output): `true`
    /// when it flags it. The CLIP preprocessing is the folder's
    /// `feature_extractor/preprocessor_config.json`, or CLIP's standard one at the checker's
    /// input size.
    fn check_safety(&mut self, picture: &RgbImage, decoded: &[f32]) -> Result<bool> {
        self.ensure(Part::SafetyChecker)?;
        let config = self
            .resources
            .root
            .join("feature_extractor/preprocessor_config.json");
        let processor = if config.is_file() {
            ClipImageProcessor::from_file(&config)?
        } else {
            let checker = self.model(Part::SafetyChecker);
            let s = checker
                .first_input_shape(Some(safety_checker::CLIP_INPUT))
                .unwrap_or_default();
            if s.len() != 4 {
                return Err(PipelineError::Signature {
                    model: "safety checker".into(),
                    reason: format!("`clip_input` is {s:?}, not (1, 3, S, S)"),
                });
            }
            ClipImageProcessor {
                size: ClipSize::ShortestEdge(s[2].min(s[3])),
                crop_size: (s[2], s[3]),
                ..Default::default()
            }
        };
        let clip = processor.preprocess(picture)?;
        let images = safety_checker_images(decoded, picture.width, picture.height)?;
        let row = Row::from([
            (safety_checker::CLIP_INPUT.to_string(), clip.data),
            (safety_checker::IMAGES.to_string(), images),
            (safety_checker::ADJUSTMENT.to_string(), vec![0.0]),
        ]);
        let out = self.model(Part::SafetyChecker).predict_rows(&[row])?;
        let flags = out[0]
            .get(safety_checker::HAS_NSFW_CONCEPTS)
            .ok_or_else(|| PipelineError::Signature {
                model: "safety checker".into(),
                reason: "no `has_nsfw_concepts` output".into(),
            })?;
        Ok(flags.iter().any(|&f| f > 0.5))
    }
}

/// `(H, W)` of a 4-D output `name` of the model's last stage.
fn output_hw(model: &Staged, name: &str) -> Result<(usize, usize)> {
    let s = model
        .stages
        .last()
        .and_then(|m| m.description().outputs.iter().find(|f| f.name == name))
        .map(|f| f.shape.clone())
        .unwrap_or_default();
    if s.len() != 4 || s[1] != 3 {
        return Err(PipelineError::Signature {
            model: model.label.clone(),
            reason: format!("`{name}` output is {s:?}, not (1, 3, H, W)"),
        });
    }
    Ok((s[2], s[3]))
}

/// The timesteps an image-to-image or inpainting run keeps for `r.strength` (diffusers'
/// `get_timesteps`), and the first of them (where the image latents are noised to).
fn strength_schedule(
    scheduler: &mut dyn sd_sched::Scheduler,
    all_timesteps: &[f32],
    r: &GenerationRequest,
) -> Result<(Vec<f32>, f32)> {
    let start = scheduler.img2img_start(f64::from(r.strength))?;
    let kept = all_timesteps[start..].to_vec();
    let first = *kept.first().ok_or_else(|| {
        PipelineError::bad(
            "strength",
            format!(
                "strength {} with {} steps runs no step; raise either",
                r.strength, r.steps
            ),
        )
    })?;
    Ok((kept, first))
}

fn check_size(field: &'static str, asked: Option<usize>, model: usize) -> Result<()> {
    match asked {
        Some(a) if a != model => Err(PipelineError::bad(
            field,
            format!(
                "{a} asked, but the models were converted for {model} (Core ML models have fixed sizes; convert again with other --latent-h/--latent-w)"
            ),
        )),
        _ => Ok(()),
    }
}

fn validate(r: &GenerationRequest) -> Result<()> {
    if r.steps == 0 || r.steps > MAX_STEPS {
        return Err(PipelineError::bad(
            "steps",
            format!("{} steps; give 1 to {MAX_STEPS}", r.steps),
        ));
    }
    if r.image_count == 0 || r.image_count > MAX_IMAGES {
        return Err(PipelineError::bad(
            "image_count",
            format!("{} images; give 1 to {MAX_IMAGES}", r.image_count),
        ));
    }
    if !r.guidance_scale.is_finite() || r.guidance_scale < 0.0 || r.guidance_scale > 100.0 {
        return Err(PipelineError::bad(
            "guidance_scale",
            format!("{}; give a number from 0 to 100", r.guidance_scale),
        ));
    }
    if !(0.0..=1.0).contains(&r.strength) {
        return Err(PipelineError::bad(
            "strength",
            format!("{}; give a number from 0 to 1", r.strength),
        ));
    }
    for c in &r.controlnets {
        if !c.scale.is_finite() {
            return Err(PipelineError::bad(
                "controlnet",
                format!("scale {} of `{}` is not a number", c.scale, c.name),
            ));
        }
    }
    Ok(())
}
