"""diffusers peer of `cargo xtask bench pipeline`: StableDiffusionPipeline, float32, on the CPU.

Loads a diffusers folder (fp16 safetensors upcast to float32, no safety checker) --load-runs
times after --load-warmup untimed loads, then per scheduler runs --warmup untimed generations
(--warmup-steps steps each) and --runs timed ones with the benchmark's settings (prompt,
negative prompt, seed through torch.Generator().manual_seed, steps, guidance). Writes the last
run's image per scheduler as raw RGB bytes (HWC, uint8, rounded as diffusers' numpy_to_pil)
and as PNG under --out, and prints one JSON object on stdout:

    {"load_s": [...], "peak_rss": bytes, "threads": n, "torch": v, "diffusers": v,
     "runs": {"pndm": {"total_s": [...], "denoise_s": [...], "unet_calls": n,
                        "width": w, "height": h, "image": path}}}

`total_s` is the whole pipeline call; `denoise_s` runs from the start of the first UNet call
to the end of the last step (the part the UNet dominates). Peak RSS is VmHWM of
/proc/self/status at the end (load and every generation).

Run with the reference venv (target/reference-venv/bin/python pipeline_peer.py --model DIR
--out DIR ...); `cargo xtask bench pipeline` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SCHEDULERS = {
    "pndm": "PNDMScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
}


def vm_hwm() -> int:
    """Peak resident set size of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=93)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--schedulers", default="pndm")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--load-runs", type=int, default=1)
    p.add_argument("--load-warmup", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    import diffusers
    from diffusers import StableDiffusionPipeline

    def load():
        pipe = StableDiffusionPipeline.from_pretrained(
            str(a.model), variant="fp16", dtype=torch.float32, safety_checker=None,
            requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    load_s = []
    pipe = None
    for i in range(a.load_warmup + a.load_runs):
        pipe = None  # the previous pipeline is freed before the next load
        t = time.perf_counter()
        pipe = load()
        dt = time.perf_counter() - t
        if i >= a.load_warmup:
            load_s.append(dt)
    log(f"loaded in {load_s[-1]:.3f} s")
    base_config = pipe.scheduler.config

    # The time the first UNet call of the current generation started, and the call count.
    state = {"first_unet": None, "unet_calls": 0, "last_step": None}

    def unet_pre(_module, _args, _kwargs):
        if state["first_unet"] is None:
            state["first_unet"] = time.perf_counter()
        state["unet_calls"] += 1

    def step_end(_pipe, i, _t, _kwargs):
        now = time.perf_counter()
        if now - (state["last_step"] or state["first_unet"]) > 2.0:  # slow steps: show progress
            log(f"step {i + 1} at {now - state['first_unet']:.1f} s")
        state["last_step"] = now
        return {}

    pipe.unet.register_forward_pre_hook(unet_pre, with_kwargs=True)
    a.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in [s for s in a.schedulers.split(",") if s]:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(base_config)

        def generate(steps):
            state.update(first_unet=None, unet_calls=0, last_step=None)
            t = time.perf_counter()
            result = pipe(prompt=a.prompt, negative_prompt=a.negative_prompt,
                          num_inference_steps=steps, guidance_scale=a.guidance,
                          generator=torch.Generator().manual_seed(a.seed), output_type="np",
                          callback_on_step_end=step_end)
            total = time.perf_counter() - t
            return result.images, total, state["last_step"] - state["first_unet"]

        for _ in range(a.warmup):
            generate(a.warmup_steps or a.steps)
        total_s, denoise_s, images = [], [], None
        for i in range(a.runs):
            images, total, denoise = generate(a.steps)
            total_s.append(total)
            denoise_s.append(denoise)
            log(f"{name} run {i + 1}/{a.runs}: {total:.3f} s (denoise {denoise:.3f} s, "
                f"{state['unet_calls']} UNet calls)")
        import numpy as np
        from PIL import Image

        image = np.rint(np.clip(images[0], 0, 1) * 255).astype(np.uint8)  # = numpy_to_pil
        raw = a.out / f"peer-{name}.rgb"
        raw.write_bytes(image.tobytes())
        Image.fromarray(image).save(a.out / f"peer-{name}.png")
        runs[name] = {"total_s": total_s, "denoise_s": denoise_s,
                      "unet_calls": state["unet_calls"], "height": int(image.shape[0]),
                      "width": int(image.shape[1]), "image": str(raw)}

    print(json.dumps({
        "load_s": load_s, "peak_rss": vm_hwm(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs,
    }))


if __name__ == "__main__":
    main()
