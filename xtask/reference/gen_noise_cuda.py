#!/usr/bin/env python3
"""Reference noise for sd-sched's NvidiaRng: torch.randn on a CUDA device (fixtures/noise/nvidia.json).

`torch.randn(shape, generator=torch.Generator(device="cuda").manual_seed(seed), device="cuda")`,
float32, same seeds / shapes / call sequences as gen_noise.py, plus one tensor larger than the
kernel's grid (more than 4 values per thread are not needed; > 132*8*256 values uses the 2nd..4th
normals of each Philox call). Needs a CUDA GPU: without one it prints a message and exits 0, so
`cargo xtask reference` stays runnable on CPU-only machines (the committed nvidia.json is kept).

Usage: python gen_noise_cuda.py --out <fixtures dir>   (writes <out>/noise/nvidia.json)
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_noise  # noqa: E402

LARGE = [[1, 4, 256, 512]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gen_noise_cuda: torch not installed; nvidia.json not regenerated")
        return
    if not torch.cuda.is_available():
        print("gen_noise_cuda: no CUDA device; nvidia.json not regenerated")
        return
    props = torch.cuda.get_device_properties(0)
    out_dir = os.path.join(args.out, "noise")
    os.makedirs(out_dir, exist_ok=True)
    gen_noise.write_json(os.path.join(out_dir, "nvidia.json"), {
        "generator": "torch.randn(shape, generator=torch.Generator(device='cuda').manual_seed(seed), "
                     "device='cuda'), float32",
        "torch_version": torch.__version__.split("+")[0],
        "device": props.name,
        "multi_processor_count": props.multi_processor_count,
        "max_threads_per_multi_processor": props.max_threads_per_multi_processor,
        "cases": gen_noise.torch_cases("cuda", LARGE),
    })


if __name__ == "__main__":
    main()
