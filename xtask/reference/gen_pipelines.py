"""Whole diffusers pipelines on sd1-tiny: fixtures/pipelines/<run>.safetensors + pipelines.json.

float32, seed 93 (torch CPU generator, as diffusers draws it), 20 steps, guidance 7.5, the prompt
and negative prompt below, 256x256 (32x32 latents), safety checker off. One text-to-image run per
scheduler (PNDM, DDIM, DPMSolverMultistep, Euler, EulerAncestral, LMS, LCM, each configured
from_config of sd1-tiny's PNDM config), then image-to-image (strength 0.75), inpainting
(inpaint-tiny UNet) and ControlNet (controlnet-tiny) runs with PNDM.

Tensors per file (see fixtures/README.md): input_ids, prompt_embeds, noise (the generator's first
draw), timesteps, latents (after every step), image (uint8, as the pipeline's PIL output), plus
per-run extras (init_image, image_moments, image_latents, add_noise, mask_image, unet_input_0,
control_image).

Run (after gen_models.py): python gen_pipelines.py --out fixtures
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from common import fresh_dir, load_sd1, log, parse_args, save_json, save_tensors, versions

PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = "blurry, low quality, watermark"
SEED = 93
STEPS = 20
GUIDANCE = 7.5
SIZE = 256

SCHEDULERS = [
    ("pndm", "PNDMScheduler"),
    ("ddim", "DDIMScheduler"),
    ("dpmsolver_multistep", "DPMSolverMultistepScheduler"),
    ("euler", "EulerDiscreteScheduler"),
    ("euler_ancestral", "EulerAncestralDiscreteScheduler"),
    ("lms", "LMSDiscreteScheduler"),
    ("lcm", "LCMScheduler"),
]


def synthetic_image(kind: str) -> Image.Image:
    """Deterministic 256x256 RGB test pictures (no files needed)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    if kind == "init":
        r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
        g = 255 * x / (SIZE - 1)
        b = 255 * ((((x // 32) + (y // 32)) % 2) * 0.6 + 0.2)
        arr = np.stack([r, g, b], axis=-1)
    elif kind == "control":  # edge-map style: white outlines on black
        arr = np.zeros((SIZE, SIZE, 3))
        ring = np.abs(np.hypot(x - 128, y - 110) - 60) < 2.5
        box = ((np.abs(x - 60) < 2) | (np.abs(x - 200) < 2)) & (y > 170) & (y < 240)
        line = (np.abs(y - 240) < 2) & (x > 58) & (x < 202)
        arr[ring | box | line] = 255
    else:
        raise ValueError(kind)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def mask_image() -> Image.Image:
    """White (repaint) rectangle on black (keep), as diffusers' inpainting expects."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[64:192, 96:224] = 255
    return Image.fromarray(m, "L")


def json_safe(v):
    """Scheduler config values for JSON: non-finite floats as strings ("-inf"), tuples as lists."""
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


class Recorder:
    """Hooks on the pipeline: every UNet call's inputs, the latents after every step,
    scheduler.add_noise arguments, the VAE encoder moments."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.unet_inputs = []
        self.latents = []
        self.add_noise = []
        self.moments = []
        self.handles = [
            pipe.unet.register_forward_pre_hook(self._unet_pre, with_kwargs=True),
            pipe.vae.quant_conv.register_forward_hook(self._moments),
        ]
        sched = pipe.scheduler
        orig = sched.add_noise

        def add_noise(original_samples, noise, timesteps):
            self.add_noise.append((original_samples.clone(), noise.clone(), timesteps.clone()))
            return orig(original_samples, noise, timesteps)

        sched.add_noise = add_noise

    def _unet_pre(self, _m, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self.unet_inputs.append((sample.clone(), torch.as_tensor(t).clone(), ehs.clone()))

    def _moments(self, _m, _inp, out):
        self.moments.append(out.clone())

    def callback(self, _pipe, _i, _t, kwargs):
        self.latents.append(kwargs["latents"].clone())
        return {}

    def close(self):
        for h in self.handles:
            h.remove()


def run(pipe, name: str, out_dir, extra_call: dict, meta: dict, index: dict) -> None:
    rec = Recorder(pipe)
    generator = torch.Generator().manual_seed(SEED)
    noise = torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(SEED))
    result = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS,
        guidance_scale=GUIDANCE, generator=generator, output_type="np",
        callback_on_step_end=rec.callback, callback_on_step_end_tensor_inputs=["latents"],
        **extra_call,
    )
    rec.close()
    image = np.rint(np.clip(result.images, 0, 1) * 255).astype(np.uint8)  # = numpy_to_pil
    first_sample, _, ehs = rec.unet_inputs[0]
    ids = pipe.tokenizer([NEGATIVE, PROMPT], padding="max_length", max_length=77,
                         truncation=True, return_tensors="pt").input_ids
    tensors = {
        "input_ids": ids.to(torch.int64),
        "prompt_embeds": ehs.float(),
        # The timestep of every UNet call (img2img: only the last ones of the schedule run).
        "timesteps": torch.stack([t.reshape(-1)[0].to(torch.float32) for _, t, _ in
                                  rec.unet_inputs]),
        "latents": torch.stack(rec.latents).float(),
        "image": torch.from_numpy(image),
    }
    if "image" not in extra_call or name in ("controlnet", "inpaint"):
        # Text-to-image: the generator's first draw is the initial noise.
        tensors["noise"] = noise
        expect = noise * pipe.scheduler.init_noise_sigma
        if name in ("pndm", "ddim", "dpmsolver_multistep", "lcm", "controlnet", "inpaint"):
            assert torch.equal(first_sample[:1, :4], expect), name
    tensors.update(meta.pop("_tensors", {}))
    if name == "img2img":
        tensors["image_moments"] = rec.moments[0].float()
        orig, nz, ts = rec.add_noise[0]
        tensors["image_latents"] = orig.float()
        tensors["noise"] = nz.float()
        tensors["add_noise_timestep"] = ts.to(torch.float32)
    if name == "inpaint":
        tensors["unet_input_0"] = first_sample.float()
        tensors["masked_image_moments"] = rec.moments[0].float()
    info = {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
        "guidance_scale": GUIDANCE, "height": SIZE, "width": SIZE,
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": {k: json_safe(v) for k, v in pipe.scheduler.config.items()
                             if not k.startswith("_")},
        "unet_calls": len(rec.unet_inputs),
        **meta,
    }
    save_tensors(out_dir / f"{name}.safetensors", tensors,
                 {"pipeline": type(pipe).__name__, "scheduler": info["scheduler"]})
    index[name] = {"file": f"{name}.safetensors", "pipeline": type(pipe).__name__,
                   "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())}, **info}
    log(f"{name}: {len(rec.latents)} steps")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import diffusers
    from diffusers import (ControlNetModel, StableDiffusionControlNetPipeline,
                           StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline,
                           UNet2DConditionModel)

    out_dir = fresh_dir(args.out / "pipelines")
    models = args.out / "models"
    pipe = load_sd1(args.out)
    base_config = pipe.scheduler.config
    index = {}

    for name, cls in SCHEDULERS:
        pipe.scheduler = getattr(diffusers, cls).from_config(base_config)
        run(pipe, name, out_dir, {}, {"kind": "text-to-image"}, index)

    pndm = diffusers.PNDMScheduler.from_config(base_config)
    comps = dict(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                 unet=pipe.unet, scheduler=pndm, safety_checker=None, feature_extractor=None,
                 requires_safety_checker=False)

    init = synthetic_image("init")
    i2i = StableDiffusionImg2ImgPipeline(**comps)
    i2i.set_progress_bar_config(disable=True)
    run(i2i, "img2img", out_dir, {"image": init, "strength": 0.75},
        {"kind": "image-to-image", "strength": 0.75,
         "_tensors": {"init_image": torch.from_numpy(np.asarray(init)[None].copy())}}, index)

    inpaint_unet = UNet2DConditionModel.from_pretrained(
        str(models / "inpaint-tiny/unet"), variant="fp16", dtype=torch.float32).eval()
    inp = StableDiffusionInpaintPipeline(**dict(comps, unet=inpaint_unet,
                                                scheduler=diffusers.PNDMScheduler.from_config(
                                                    base_config)))
    inp.set_progress_bar_config(disable=True)
    mask = mask_image()
    run(inp, "inpaint", out_dir, {"image": init, "mask_image": mask, "height": SIZE,
                                  "width": SIZE},
        {"kind": "inpainting", "strength": 1.0, "unet": "inpaint-tiny",
         "_tensors": {"init_image": torch.from_numpy(np.asarray(init)[None].copy()),
                      "mask_image": torch.from_numpy(np.asarray(mask)[None, :, :, None].copy())}},
        index)

    cn = ControlNetModel.from_pretrained(str(models / "controlnet-tiny"), variant="fp16",
                                         dtype=torch.float32).eval()
    cnp = StableDiffusionControlNetPipeline(**dict(
        comps, controlnet=cn, scheduler=diffusers.PNDMScheduler.from_config(base_config)))
    cnp.set_progress_bar_config(disable=True)
    control = synthetic_image("control")
    run(cnp, "controlnet", out_dir, {"image": control, "height": SIZE, "width": SIZE},
        {"kind": "controlnet", "controlnet": "controlnet-tiny",
         "controlnet_conditioning_scale": 1.0,
         "_tensors": {"control_image": torch.from_numpy(np.asarray(control)[None].copy())}},
        index)

    save_json(out_dir / "pipelines.json", {"runs": index, "versions": versions()})


if __name__ == "__main__":
    main()
