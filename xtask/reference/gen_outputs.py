"""Component outputs on fixed random inputs: fixtures/outputs/<model>/<component>.io.safetensors.

Convention (as ../shared/fixtures/apple-tiny/reference): `in.<name>` / `out.<name>` tensors in
the Core ML signature's layout, float32, outputs computed by the diffusers/transformers modules in
float32 with the fp16 weights upcast. Intermediates to debug against are `mid.<module path>`:
conv feature maps as (B, C, H, W), transformer-block outputs in the Core ML (B, C, 1, S) layout,
timestep embeddings as (B, D).

Run (after gen_models.py): python gen_outputs.py --out fixtures
"""

from __future__ import annotations

from pathlib import Path

from common import f32, fresh_dir, log, parse_args, safety_probes, save_tensors, seed, versions

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

PROMPT = "A photo of an astronaut riding a horse on Mars"
NEGATIVE = ""


def gen(n: int) -> torch.Generator:
    return torch.Generator().manual_seed(n)


def bc1s(x: torch.Tensor) -> torch.Tensor:
    """(B, S, C) -> Core ML's (B, C, 1, S)."""
    return x.transpose(1, 2).unsqueeze(2)


def tokens(tokenizer, texts):
    return tokenizer(texts, padding="max_length", max_length=77, truncation=True,
                     return_tensors="pt").input_ids


def text_encoder_io(te, tokenizer, path: Path) -> None:
    ids = tokens(tokenizer, [PROMPT])
    out = te(ids, output_hidden_states=True)
    save_tensors(path, {
        "in.input_ids": f32(ids),
        "out.last_hidden_state": f32(out.last_hidden_state),
        "out.pooled_outputs": f32(out.pooler_output),
        "out.hidden_embeds": f32(out.hidden_states[-2]),
    }, {"prompt": PROMPT, "hidden_embeds": "penultimate hidden state (hidden_states[-2])"})


def cfg_context(te, tokenizer) -> torch.Tensor:
    """(2, 77, C): [negative "", prompt] through the text encoder, as a pipeline would."""
    return te(tokens(tokenizer, [NEGATIVE, PROMPT]))[0]


class Capture:
    """Forward hooks recording the first output of named submodules."""

    def __init__(self, model, names):
        self.values = {}
        self.handles = []
        modules = dict(model.named_modules())
        for name in names:
            self.handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(_module, _inputs, output):
            if name not in self.values:
                self.values[name] = output[0] if isinstance(output, tuple) else output
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


UNET_MIDS = ["time_proj", "time_embedding", "down_blocks.0.resnets.0",
             "down_blocks.0.attentions.0.transformer_blocks.0"]


def unet_io(unet, context, latent: int, timesteps, path: Path, seed_n: int,
            residuals: dict | None = None, intermediates: bool = True, meta=None) -> None:
    c = unet.config.in_channels
    sample = torch.randn((2, c, latent, latent), generator=gen(seed_n))
    t = torch.tensor(timesteps, dtype=torch.float32)
    cap = Capture(unet, UNET_MIDS) if intermediates else None
    kwargs = {}
    tensors = {"in.sample": sample, "in.timestep": t, "in.encoder_hidden_states": bc1s(context)}
    if residuals is not None:
        names = sorted(residuals, key=lambda k: int(k.rsplit("_", 1)[1]))
        down = [residuals[k] for k in names[:-1]]
        kwargs = dict(down_block_additional_residuals=down,
                      mid_block_additional_residual=residuals[names[-1]])
        tensors.update({f"in.{k}": v for k, v in residuals.items()})
    noise_pred = unet(sample, t, encoder_hidden_states=context, **kwargs).sample
    tensors["out.noise_pred"] = noise_pred
    if cap is not None:
        cap.close()
        for name, v in cap.values.items():
            if name.endswith("transformer_blocks.0"):
                v = bc1s(v)
            tensors[f"mid.{name}"] = v
    save_tensors(path, {k: f32(v) for k, v in tensors.items()}, meta)


def vae_io(vae, latent: int, out_dir: Path, seed_n: int) -> None:
    z = torch.randn((1, 4, latent, latent), generator=gen(seed_n)) / vae.config.scaling_factor
    image = vae.decode(z).sample
    save_tensors(out_dir / "vae_decoder.io.safetensors", {"in.z": f32(z), "out.image": f32(image)},
                 {"computes": "decoder(post_quant_conv(z)); z = latents / scaling_factor"})
    x = torch.rand((1, 3, latent * 8, latent * 8), generator=gen(seed_n + 1)) * 2 - 1
    h = vae.encoder(x)
    moments = vae.quant_conv(h) if vae.quant_conv is not None else h
    ref = vae.encode(x).latent_dist.parameters
    assert torch.equal(moments, ref)
    save_tensors(out_dir / "vae_encoder.io.safetensors",
                 {"in.x": f32(x), "out.latent": f32(moments)},
                 {"computes": "quant_conv(encoder(x)): channels 0..3 mean, 4..7 logvar"})


def controlnet_forward(cn, sample, t, context, cond):
    down, mid = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond,
                   conditioning_scale=1.0, return_dict=False)
    res = list(down) + [mid]
    return {f"additional_residual_{i}": r for i, r in enumerate(res)}


def safety_forward_coreml(sc, clip_input, images, adjustment):
    """Apple's forward_coreml (torch2coreml.py, ml-stable-diffusion 1.1.0) on the diffusers
    StableDiffusionSafetyChecker: concept_scores, has_nsfw_concepts (B,1,1,1) as float, and the
    images with flagged ones zeroed."""
    def cosine_distance(a, b):
        return F.normalize(a) @ F.normalize(b).transpose(0, 1)

    pooled = sc.vision_model(clip_input)[1]
    image_embeds = sc.visual_projection(pooled)
    special_cos = cosine_distance(image_embeds, sc.special_care_embeds)
    cos = cosine_distance(image_embeds, sc.concept_embeds)
    special_scores = special_cos - sc.special_care_embeds_weights + adjustment
    special_care = special_scores.gt(0).float().sum(dim=1).gt(0).float()
    special_adj = (special_care * 0.01).unsqueeze(1).expand(-1, cos.shape[1])
    concept_scores = (cos - sc.concept_embeds_weights) + special_adj
    has_nsfw = concept_scores.gt(0).float().sum(dim=1).gt(0)[:, None, None, None]
    inds, _ = torch.broadcast_tensors(has_nsfw, images)
    filtered = images.clone()
    filtered[inds] = 0.0
    return filtered, has_nsfw.float(), concept_scores


def safety_io(models: Path, out_dir: Path) -> None:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    sc = StableDiffusionSafetyChecker.from_pretrained(
        str(models / "safety-checker-tiny/safety_checker"), dtype=torch.float32).eval()
    probes = safety_probes(sc.config.vision_config.image_size)
    cases = [("safety_checker", "flagged", 0.0, "flagged: has_nsfw_concepts 1, filtered_images all zero"),
             ("safety_checker_clean", "clean", 0.0, "not flagged: filtered_images == images"),
             ("safety_checker_adjusted", "clean", 0.1,
              "adjustment 0.1 turns special care on: concept_scores +0.01")]
    for name, probe, adj, note in cases:
        clip_input, images = probes[probe]
        adjustment = torch.tensor([adj])
        filtered, flag, scores = safety_forward_coreml(sc, clip_input, images, adjustment)
        assert (flag.item() > 0) == (probe == "flagged"), (name, scores)
        save_tensors(out_dir / f"{name}.io.safetensors",
                     {"in.clip_input": f32(clip_input), "in.images": f32(images),
                      "in.adjustment": f32(adjustment), "out.filtered_images": f32(filtered),
                      "out.has_nsfw_concepts": f32(flag), "out.concept_scores": f32(scores)},
                     {"case": note})


def projection_io(models: Path, out_dir: Path) -> None:
    from safetensors.torch import load_file

    w = load_file(str(models / "projection-tiny/projection.safetensors"))
    x = torch.randn((1, 256, 512), generator=gen(8001))
    y = F.linear(x, w["weight"], w["bias"])
    save_tensors(out_dir / "projection.io.safetensors",
                 {"in.nlcontextualembeddings_output": f32(x),
                  "out.encoder_hidden_states": f32(bc1s(y))})


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    seed(0)
    models = args.out / "models"
    root = fresh_dir(args.out / "outputs")
    v = versions()

    def load(kind, path, **kw):
        return kind.from_pretrained(str(path), variant="fp16", dtype=torch.float32, **kw).eval()

    # --- SD1-style
    sd1 = models / "sd1-tiny"
    o = root / "sd1-tiny"
    tok1 = CLIPTokenizer.from_pretrained(str(sd1 / "tokenizer"))
    te1 = load(CLIPTextModel, sd1 / "text_encoder")
    text_encoder_io(te1, tok1, o / "text_encoder.io.safetensors")
    ctx1 = cfg_context(te1, tok1)
    unet1 = load(UNet2DConditionModel, sd1 / "unet")
    unet_io(unet1, ctx1, 32, [981.0, 601.0], o / "unet.io.safetensors", 101,
            meta={"encoder_hidden_states": f"text encoder on [{NEGATIVE!r}, {PROMPT!r}]",
                  "timestep": "different per batch entry on purpose"})
    cn = load(ControlNetModel, models / "controlnet-tiny")
    sample = torch.randn((2, 4, 16, 16), generator=gen(102))
    t = torch.tensor([981.0, 601.0])
    cond = torch.rand((2, 3, 128, 128), generator=gen(103))
    res = controlnet_forward(cn, sample, t, ctx1, cond)
    save_tensors(root / "controlnet-tiny/controlnet.io.safetensors",
                 {"in.sample": sample, "in.timestep": t,
                  "in.encoder_hidden_states": f32(bc1s(ctx1)), "in.controlnet_cond": cond,
                  **{f"out.{k}": f32(r) for k, r in res.items()}},
                 {"latent": "16x16 (controlnet_cond 128x128) to keep the fixture small",
                  "controlnet_cond": "uniform [0, 1]"})
    unet_io(unet1, ctx1, 16, [981.0, 601.0], o / "control_unet.io.safetensors", 102,
            residuals=res, intermediates=False,
            meta={"additional_residual_i": "controlnet-tiny's outputs (controlnet.io.safetensors)",
                  "latent": "16x16"})
    vae1 = load(AutoencoderKL, sd1 / "vae")
    vae_io(vae1, 16, o, 104)
    del unet1, cn, vae1

    # --- inpainting UNet (9 channels), sd1-tiny's text encoder
    inp = load(UNet2DConditionModel, models / "inpaint-tiny/unet")
    unet_io(inp, ctx1, 32, [981.0, 601.0], root / "inpaint-tiny/unet.io.safetensors", 201,
            intermediates=False,
            meta={"sample": "9 channels: latents (4), mask (1), masked-image latents (4)"})
    del inp, te1

    # --- SD2-style
    sd2 = models / "sd2-tiny"
    o = root / "sd2-tiny"
    tok2 = CLIPTokenizer.from_pretrained(str(sd2 / "tokenizer"))
    te2 = load(CLIPTextModel, sd2 / "text_encoder")
    text_encoder_io(te2, tok2, o / "text_encoder.io.safetensors")
    ctx2 = cfg_context(te2, tok2)
    unet2 = load(UNet2DConditionModel, sd2 / "unet")
    unet_io(unet2, ctx2, 40, [981.0, 601.0], o / "unet.io.safetensors", 301,
            meta={"latent": "40x40: attention sequence 1600, not a multiple of 512",
                  "prediction_type": "v_prediction (the output is v, not epsilon)"})
    vae2 = load(AutoencoderKL, sd2 / "vae")
    vae_io(vae2, 16, o, 304)
    del unet2, vae2, te2

    safety_io(models, root / "safety-checker-tiny")
    projection_io(models, root / "projection-tiny")
    log(f"outputs written ({v['torch']}, diffusers {v['diffusers']})")


if __name__ == "__main__":
    main()
