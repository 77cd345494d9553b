"""Shared helpers for the reference generators (xtask/reference/gen_*.py).

Every generator is run as `python gen_X.py --out <fixtures dir>` by `cargo xtask reference`.
Everything here exists so that two runs give byte-identical files: fixed seeds, one torch
thread, deterministic algorithms, safetensors/JSON written with sorted keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

# Must be set before torch is imported. ATEN_CPU_CAPABILITY=default: ATen's portable kernels, so
# that torch.randn (>= 16 values) draws the same numbers on every CPU (its AVX2 kernel uses
# approximate log/sincos), matching fixtures/noise's "default" stream.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set by an earlier import in this process
    pass
torch.use_deterministic_algorithms(True)
torch.set_grad_enabled(False)
torch.backends.cudnn.benchmark = False


def seed(n: int) -> None:
    """Seeds Python, numpy and torch (CPU) with `n`."""
    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)


def parse_args(description: str, extra=None) -> argparse.Namespace:
    """`--out <fixtures dir>` (default: the repository's fixtures/)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=REPO / "fixtures", help="fixtures folder")
    if extra is not None:
        extra(p)
    a = p.parse_args()
    a.out = a.out.resolve()
    return a


def fresh_dir(path: Path) -> Path:
    """Removes `path` if present and creates it empty (so stale files never linger)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _as_tensor(v) -> torch.Tensor:
    if isinstance(v, np.ndarray):
        v = torch.from_numpy(np.ascontiguousarray(v))
    return v.detach().cpu().contiguous()


_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes a safetensors file deterministically: tensors in sorted name order, header keys
    sorted (the safetensors library orders `__metadata__` through a hash map, so its files differ
    from run to run when the metadata has more than one entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = _as_tensor(tensors[name])
        data = t.numpy().tobytes() if t.dtype != torch.bfloat16 else \
            t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.chmod(path, 0o644)
    from safetensors import safe_open  # read back: a well-formed file

    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(tensors)


def f32(t) -> torch.Tensor:
    return _as_tensor(t).to(torch.float32)


def save_json(path: Path, obj) -> None:
    """JSON with sorted keys, two-space indent, UTF-8 (not ASCII-escaped), final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def perturb_constant_params(module: torch.nn.Module, gen_seed: int, scale: float = 0.02) -> None:
    """Adds seeded noise (x `scale`) to every parameter a fresh initialisation leaves constant
    (norm scales of 1, zero biases, zero-initialised convs), so a mistake in a scale or shift
    shows in the outputs and converters cannot fold identity norms away."""
    g = torch.Generator().manual_seed(gen_seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        flat = p.detach().reshape(-1)
        if flat.numel() == 0:
            continue
        if bool((flat == flat[0]).all()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * scale
            p.data.copy_((p.data.float() + noise).to(p.dtype))


def randomize_all(module: torch.nn.Module, gen_seed: int, scale: float) -> None:
    """Replaces every parameter with seeded normal noise (x `scale`)."""
    g = torch.Generator().manual_seed(gen_seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        p.data.copy_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))


def round_to_fp16(module: torch.nn.Module) -> torch.nn.Module:
    """Rounds the weights to fp16 and back: the fp32 module then computes exactly what the
    saved fp16 weights give once upcast."""
    for p in module.parameters():
        p.data.copy_(p.data.half().float())
    for b in module.buffers():
        if b.is_floating_point():
            b.data.copy_(b.data.half().float())
    return module


def safety_probes(image_size: int):
    """The safety checker's fixture inputs: (clip_input, images) for a flagged and a clean case.
    gen_models.py sets the tiny checker's thresholds from these, gen_outputs.py runs them."""
    g = torch.Generator().manual_seed(7000)
    clip_flagged = torch.randn((1, 3, image_size, image_size), generator=g)
    clip_clean = torch.randn((1, 3, image_size, image_size), generator=g)
    images_flagged = torch.rand((1, 64, 64, 3), generator=g)
    images_clean = torch.rand((1, 64, 64, 3), generator=g)
    return {"flagged": (clip_flagged, images_flagged), "clean": (clip_clean, images_clean)}


def versions() -> dict:
    import diffusers
    import safetensors
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def log(msg: str) -> None:
    print(f"[{Path(sys.argv[0]).stem}] {msg}", flush=True)


def models_dir(out: Path) -> Path:
    return out / "models"


def load_sd1(out: Path):
    """The SD1-style pipeline (fixtures/models/sd1-tiny) in float32, no safety checker."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(models_dir(out) / "sd1-tiny"),
        variant="fp16",
        dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
