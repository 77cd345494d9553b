#!/usr/bin/env python3
"""Reference data for sd-sched's schedulers, produced by diffusers itself (fixtures/schedulers/).

* betas.json      — betas and alphas_cumprod (float32 bits) per beta schedule.
* timesteps.json  — timesteps, sigmas and init_noise_sigma after set_timesteps(n) for every
                    scheduler variant x beta schedule x timestep spacing x n in {1,2,10,20,25,50}
                    (prediction_type does not enter the schedule; it is covered by the traces).
* traces.json + traces.safetensors — step-by-step runs on (2,4,4,4) float32 tensors with
                    recorded pseudo model outputs: inputs (sample, model_output, timestep) and
                    outputs (scale_model_input, prev_sample, pred_original_sample, and the noise each
                    stochastic step drew). One torch.Generator per trace draws the initial latents
                    first and then the steps' noise, as a pipeline does.
* img2img.json (+ tensors in traces.safetensors) — first step by strength (pipelines'
                    get_timesteps) and add_noise at the first remaining timestep.

Torch runs with ATEN_CPU_CAPABILITY=default so the recorded noise is the portable kernel's on any
x86 machine. LMSDiscreteScheduler.step needs scipy.integrate.quad; without scipy an exact
Gauss-Legendre stand-in (the integrands are polynomials of degree <= 3) is used and the fact is
recorded in traces.json.

Usage: python gen_schedulers.py --out <fixtures dir>   (writes <out>/schedulers/)
Deterministic: two runs give byte-identical files.
"""
import argparse
import json
import os
import struct
import sys

os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers import scheduling_lms_discrete  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

torch.set_num_threads(1)

QUAD = "scipy.integrate.quad"
if not hasattr(scheduling_lms_discrete, "integrate"):
    QUAD = "gauss-legendre stand-in (scipy missing)"

    class _Integrate:
        @staticmethod
        def quad(f, a, b, epsrel=None):
            x, w = np.polynomial.legendre.leggauss(8)
            a, b = float(a), float(b)
            half, mid = (b - a) / 2.0, (a + b) / 2.0
            return (sum(float(wi) * float(f(mid + half * float(xi))) for xi, wi in zip(x, w)) * half, 0.0)

    scheduling_lms_discrete.integrate = _Integrate()

SD_BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
BETAS = {
    "linear": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    "scaled_linear": SD_BETAS,
    "squaredcos_cap_v2": {"beta_schedule": "squaredcos_cap_v2"},
}
SPACINGS = ["linspace", "leading", "trailing"]
STEPS = [1, 2, 10, 20, 25, 50]

CLASSES = {
    "PNDMScheduler": PNDMScheduler,
    "DDIMScheduler": DDIMScheduler,
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
    "EulerDiscreteScheduler": EulerDiscreteScheduler,
    "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
    "LMSDiscreteScheduler": LMSDiscreteScheduler,
    "LCMScheduler": LCMScheduler,
}

# name -> (class, config extras) for the schedule matrix
VARIANTS = {
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"steps_offset": 1}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"steps_offset": 1, "use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {"steps_offset": 1}),
    "euler_karras": ("EulerDiscreteScheduler", {"steps_offset": 1, "use_karras_sigmas": True}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {"steps_offset": 1}),
    "lms": ("LMSDiscreteScheduler", {"steps_offset": 1}),
    "lms_karras": ("LMSDiscreteScheduler", {"steps_offset": 1, "use_karras_sigmas": True}),
    "lcm": ("LCMScheduler", {}),
}

SHAPE = (2, 4, 4, 4)

# name -> (class, config, steps, eta)
TRACES = {
    "pndm_eps": ("PNDMScheduler", dict(VARIANTS["pndm"][1], **SD_BETAS), 20, None),
    "pndm_v_trailing_linear": ("PNDMScheduler", dict(VARIANTS["pndm"][1], prediction_type="v_prediction",
                                                     timestep_spacing="trailing", **BETAS["linear"]), 20, None),
    "ddim_eta0": ("DDIMScheduler", dict(VARIANTS["ddim"][1], **SD_BETAS), 20, 0.0),
    "ddim_eta05_v_trailing_clip": ("DDIMScheduler", dict(SD_BETAS, prediction_type="v_prediction",
                                                         timestep_spacing="trailing", clip_sample=True,
                                                         set_alpha_to_one=False), 20, 0.5),
    "ddim_cosine_linspace": ("DDIMScheduler", dict(BETAS["squaredcos_cap_v2"], clip_sample=False,
                                                   timestep_spacing="linspace"), 20, 0.0),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", dict(SD_BETAS, steps_offset=1), 20, None),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", dict(SD_BETAS, steps_offset=1, use_karras_sigmas=True),
                        20, None),
    "dpmpp_2m_v_trailing_10": ("DPMSolverMultistepScheduler", dict(SD_BETAS, prediction_type="v_prediction",
                                                                   timestep_spacing="trailing"), 10, None),
    "dpmpp_2m_heun_leading_sigma_min": ("DPMSolverMultistepScheduler",
                                        dict(SD_BETAS, solver_type="heun", timestep_spacing="leading",
                                             steps_offset=1, final_sigmas_type="sigma_min"), 20, None),
    "euler": ("EulerDiscreteScheduler", dict(SD_BETAS, steps_offset=1), 20, None),
    "euler_v_leading": ("EulerDiscreteScheduler", dict(SD_BETAS, steps_offset=1, prediction_type="v_prediction",
                                                       timestep_spacing="leading"), 20, None),
    "euler_karras": ("EulerDiscreteScheduler", dict(SD_BETAS, use_karras_sigmas=True), 20, None),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", dict(SD_BETAS, steps_offset=1), 20, None),
    "euler_ancestral_v_trailing": ("EulerAncestralDiscreteScheduler",
                                   dict(SD_BETAS, prediction_type="v_prediction", timestep_spacing="trailing"),
                                   20, None),
    "lms": ("LMSDiscreteScheduler", dict(SD_BETAS, steps_offset=1), 20, None),
    "lms_v_karras": ("LMSDiscreteScheduler", dict(SD_BETAS, prediction_type="v_prediction",
                                                  use_karras_sigmas=True), 20, None),
    "lcm": ("LCMScheduler", dict(SD_BETAS), 20, None),
}


def hex_f32(a):
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    return a.astype("<f4").tobytes().hex()


def f32_list(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def make(cls_name, config):
    return CLASSES[cls_name](**config)


def with_class(cls_name, config):
    c = dict(config)
    c["_class_name"] = cls_name
    return c


def gen_betas():
    out = {}
    for name, cfg in BETAS.items():
        s = DDIMScheduler(**cfg)
        out[name] = {"config": cfg, "betas_f32": hex_f32(s.betas.numpy()),
                     "alphas_cumprod_f32": hex_f32(s.alphas_cumprod.numpy())}
    return out


def gen_timesteps():
    cases = []
    for vname, (cls_name, extra) in VARIANTS.items():
        for bname, bcfg in BETAS.items():
            spacings = ["leading"] if cls_name == "LCMScheduler" else SPACINGS
            for spacing in spacings:
                cfg = dict(extra, **bcfg)
                if cls_name != "LCMScheduler":
                    cfg["timestep_spacing"] = spacing
                for n in STEPS:
                    case = {"variant": vname, "beta": bname, "spacing": spacing, "steps": n,
                            "config": with_class(cls_name, cfg)}
                    s = make(cls_name, cfg)
                    try:
                        s.set_timesteps(n)
                    except Exception as e:  # diffusers refuses this combination
                        case["error"] = type(e).__name__
                        cases.append(case)
                        continue
                    ts = s.timesteps.numpy()
                    case["timesteps_are_int"] = bool(np.issubdtype(ts.dtype, np.integer))
                    case["timesteps"] = [int(x) for x in ts] if case["timesteps_are_int"] else f32_list(ts)
                    sig = getattr(s, "sigmas", None)
                    if sig is not None and cls_name not in ("PNDMScheduler", "DDIMScheduler", "LCMScheduler"):
                        case["sigmas"] = f32_list(sig.numpy())
                    ins = s.init_noise_sigma
                    case["init_noise_sigma"] = float(np.float32(ins.item() if torch.is_tensor(ins) else ins))
                    cases.append(case)
    return cases


def pseudo_model(x, t, i):
    """A smooth deterministic stand-in for the UNet (recorded, so Rust never evaluates it)."""
    tt = torch.tensor(float(t), dtype=torch.float32)
    return (0.7 * x + 0.4 * torch.sin(3.0 * x + tt / 97.0 + 0.1 * i)).to(torch.float32)


def record_noise(store):
    import diffusers.utils.torch_utils as tu

    orig = tu.randn_tensor

    def wrapped(*args, **kwargs):
        out = orig(*args, **kwargs)
        store.append(out.detach().clone())
        return out

    for mod in list(sys.modules.values()):
        if mod is not None and getattr(mod, "__name__", "").startswith("diffusers.schedulers.") \
                and hasattr(mod, "randn_tensor"):
            mod.randn_tensor = wrapped


def gen_traces(tensors):
    drawn = []
    record_noise(drawn)
    meta = {}
    for k, (name, (cls_name, cfg, steps, eta)) in enumerate(TRACES.items()):
        seed = 1000 + k
        s = make(cls_name, cfg)
        s.set_timesteps(steps)
        g = torch.Generator().manual_seed(seed)
        ins = s.init_noise_sigma
        latents = torch.randn(SHAPE, generator=g, dtype=torch.float32) * ins
        tensors[f"{name}/latents"] = latents.numpy()
        # The raw first draw (latents before scaling), to check a Rust generator's draw order.
        tensors[f"{name}/latents_noise"] = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)).numpy()
        sample = latents
        info = {"config": with_class(cls_name, cfg), "steps": steps, "seed": seed, "shape": list(SHAPE),
                "init_noise_sigma": float(np.float32(ins.item() if torch.is_tensor(ins) else ins)),
                "timesteps": [], "has_pred_original": None, "noise_steps": []}
        if eta is not None:
            info["eta"] = eta
        for i, t in enumerate(s.timesteps):
            scaled = s.scale_model_input(sample, t)
            mo = pseudo_model(scaled, t, i)
            kwargs = {}
            if eta is not None:
                kwargs["eta"] = eta
            if cls_name in ("DDIMScheduler", "EulerAncestralDiscreteScheduler", "LCMScheduler"):
                kwargs["generator"] = g
            before = len(drawn)
            out = s.step(mo, t, sample, return_dict=False, **kwargs)
            prev = out[0]
            x0 = out[1] if len(out) > 1 else None
            info["timesteps"].append(float(t.item()))
            tensors[f"{name}/{i}/scaled"] = scaled.numpy()
            tensors[f"{name}/{i}/model_output"] = mo.numpy()
            tensors[f"{name}/{i}/prev_sample"] = prev.numpy()
            info["has_pred_original"] = x0 is not None
            if x0 is not None:
                tensors[f"{name}/{i}/pred_original"] = x0.numpy()
            if len(drawn) > before:
                assert len(drawn) == before + 1
                tensors[f"{name}/{i}/noise"] = drawn[-1].numpy()
                info["noise_steps"].append(i)
            sample = prev
        meta[name] = info
    return meta


def gen_img2img(tensors):
    g = torch.Generator().manual_seed(7)
    init = torch.randn(SHAPE, generator=g)
    noise = torch.randn(SHAPE, generator=g)
    tensors["img2img/init"] = init.numpy()
    tensors["img2img/noise"] = noise.numpy()
    cases = []
    for vname, (cls_name, extra) in VARIANTS.items():
        cfg = dict(extra, **SD_BETAS)
        for n in [10, 25, 50]:
            for strength in [0.0, 0.3, 0.5, 0.75, 1.0]:
                s = make(cls_name, cfg)
                s.set_timesteps(n)
                init_timestep = min(int(n * strength), n)
                t_start = max(n - init_timestep, 0)
                timesteps = s.timesteps[t_start * s.order:]
                if hasattr(s, "set_begin_index"):
                    s.set_begin_index(t_start * s.order)
                case = {"variant": vname, "config": with_class(cls_name, cfg), "steps": n, "strength": strength,
                        "start": t_start * s.order}
                ts = timesteps.numpy()
                case["timesteps"] = [float(x) for x in ts.astype(np.float32)]
                if len(ts) > 0:
                    key = f"img2img/{vname}/{n}/{strength}"
                    tensors[key] = s.add_noise(init, noise, timesteps[:1]).numpy()
                    case["add_noise"] = key
                cases.append(case)
    return cases


def dump(path, obj, indent=None):
    with open(path, "w") as f:
        json.dump(obj, f, sort_keys=True, indent=indent, separators=(",", ":") if indent is None else None)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = os.path.join(args.out, "schedulers")
    os.makedirs(out, exist_ok=True)
    versions = {"diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0],
                "numpy": np.__version__}
    dump(os.path.join(out, "betas.json"), {"versions": versions, "schedules": gen_betas()}, indent=1)
    dump(os.path.join(out, "timesteps.json"), {"versions": versions, "cases": gen_timesteps()})
    tensors = {}
    traces = gen_traces(tensors)
    img = gen_img2img(tensors)
    dump(os.path.join(out, "traces.json"), {"versions": versions, "lms_integrator": QUAD,
                                            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                            "traces": traces, "img2img": img}, indent=1)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())}
    save_file(tensors, os.path.join(out, "traces.safetensors"))


if __name__ == "__main__":
    main()
