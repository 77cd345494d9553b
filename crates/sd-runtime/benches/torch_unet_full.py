"""PyTorch CPU peer for the full-size UNet benchmark (benches/unet_full.rs): loads the diffusers
UNet (fp16 weights, run in fp32), runs it on the inputs of a safetensors file (Core ML layout:
encoder_hidden_states (B, C, 1, S)), writes its output next to them and prints one JSON line
{"ms": [...], "median_ms": m, "threads": t, "torch": version}.

target/reference-venv/bin/python torch_unet_full.py UNET_FOLDER INPUTS.safetensors OUT.safetensors RUNS
"""
import json
import statistics
import sys
import time

import torch
from safetensors.torch import load_file, save_file


def main():
    folder, inputs, out_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    from diffusers import UNet2DConditionModel

    torch.set_grad_enabled(False)
    unet = UNet2DConditionModel.from_pretrained(folder, variant="fp16", torch_dtype=torch.float32).eval()
    x = load_file(inputs)
    sample, t = x["sample"].float(), x["timestep"].float()
    ehs = x["encoder_hidden_states"].float().squeeze(2).transpose(1, 2)
    out = unet(sample, t, ehs).sample  # warm-up
    times = []
    for _ in range(runs):
        s = time.perf_counter()
        out = unet(sample, t, ehs).sample
        times.append((time.perf_counter() - s) * 1000.0)
    save_file({"noise_pred": out.contiguous()}, out_path)
    print(json.dumps({
        "ms": times,
        "median_ms": statistics.median(times),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
