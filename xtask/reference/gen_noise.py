#!/usr/bin/env python3
"""Reference noise for sd-sched's NumpyRng and TorchRng (fixtures/noise/{numpy,torch}.json).

numpy: `np.random.RandomState(seed).randn(*shape)` (float64; stored as float64 and float32 bits).
torch: `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` on the CPU, float32, once
with ATen's portable kernels (ATEN_CPU_CAPABILITY=default: what ARM, AVX-512 and non-AVX2 x86 CPUs
run) and once with its AVX2 kernels (x86 with AVX2, where `torch.randn` of >= 16 values uses
avx_mathfun's log/sincos). Each case is a fresh generator and a list of calls drawn in order, so the
cached second normal value and the per-call tail rule are exercised. Large arrays are stored as an
FNV-1a-64 hash of their little-endian float32 bytes plus their first and last 16 values.

Usage: python gen_noise.py --out <fixtures dir>   (writes <out>/noise/)
Deterministic: two runs give byte-identical files.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

SEEDS = [0, 1, 93, 2**32 - 1]
SINGLE_SHAPES = [[1], [7], [15], [16], [17], [31], [100], [1, 4, 8, 8], [1, 4, 64, 64]]
SEQUENCE = [[7], [7], [3], [16], [17], [1, 4, 8, 8], [5]]
FULL_LIMIT = 512  # arrays with more values are stored as hash + head + tail


def cases(extra_shapes=()):
    out = []
    for seed in SEEDS:
        for shape in list(SINGLE_SHAPES) + list(extra_shapes):
            out.append({"seed": seed, "shapes": [shape]})
        out.append({"seed": seed, "shapes": SEQUENCE})
    return out


def hex_f32(values):
    return "".join(struct.pack("<f", v).hex() for v in values)


def hex_f64(values):
    return "".join(struct.pack("<d", v).hex() for v in values)


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def record_f32(shape, flat32, flat64=None):
    """flat32: list of python floats that are exactly float32 values."""
    count = len(flat32)
    rec = {"shape": list(shape), "count": count}
    if count <= FULL_LIMIT:
        rec["f32"] = hex_f32(flat32)
        if flat64 is not None:
            rec["f64"] = hex_f64(flat64)
    else:
        rec["fnv1a64_f32"] = fnv1a64(struct.pack(f"<{count}f", *flat32))
        rec["head_f32"] = hex_f32(flat32[:16])
        rec["tail_f32"] = hex_f32(flat32[-16:])
    return rec


def numpy_cases():
    import numpy as np

    out = []
    for case in cases():
        rs = np.random.RandomState(case["seed"])
        calls = []
        for shape in case["shapes"]:
            a = rs.randn(*shape)
            f64 = [float(x) for x in a.reshape(-1)]
            f32 = [float(x) for x in a.astype(np.float32).reshape(-1)]
            calls.append(record_f32(shape, f32, f64))
        out.append({"seed": case["seed"], "calls": calls})
    return {"generator": "numpy.random.RandomState(seed).randn", "numpy_version": np.__version__,
            "cases": out}


def torch_cases(device="cpu", extra_shapes=()):
    import torch

    out = []
    for case in cases(extra_shapes):
        g = torch.Generator(device=device).manual_seed(case["seed"])
        calls = []
        for shape in case["shapes"]:
            a = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
            f32 = [float(x) for x in a.cpu().reshape(-1).tolist()]
            calls.append(record_f32(shape, f32))
        out.append({"seed": case["seed"], "calls": calls})
    return out


def torch_worker():
    import torch

    res = {"capability": torch.backends.cpu.get_cpu_capability(), "cases": torch_cases("cpu")}
    sys.stdout.write(json.dumps(res, sort_keys=True))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, sort_keys=True, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker()
        return
    if args.out is None:
        ap.error("--out is required")
    out_dir = os.path.join(args.out, "noise")
    os.makedirs(out_dir, exist_ok=True)

    write_json(os.path.join(out_dir, "numpy.json"), numpy_cases())

    import torch

    variants = {}
    for cap in ["default", "avx2"]:
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        res = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker"],
                                        env=env, check=True, capture_output=True).stdout)
        if res["capability"].lower() != cap:
            print(f"gen_noise: torch capability {cap!r} not available here (got {res['capability']}); skipped",
                  file=sys.stderr)
            continue
        variants[cap] = res["cases"]
    write_json(os.path.join(out_dir, "torch.json"), {
        "generator": "torch.randn(shape, generator=torch.Generator().manual_seed(seed)), CPU, float32",
        "torch_version": torch.__version__.split("+")[0],
        "variants": variants,
    })


if __name__ == "__main__":
    main()
