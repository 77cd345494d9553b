"""PyTorch peer for the sd-runtime benchmark: times the tiny text encoder, UNet and VAE
decoder from the diffusers folder on the reference inputs and prints one JSON object
{"text_encoder": ms, "unet": ms, "vae_decoder": ms} (median of --runs runs, after a warm-up).

Run with the reference venv: target/reference-venv/bin/python torch_peer.py FIXTURES_DIR [RUNS]
[--fp16] [--device cuda]. FIXTURES_DIR holds model/ (the diffusers folder) and reference/.
On CUDA the models and inputs live on the GPU, there are 3 warm-up runs, and each timed run
ends with torch.cuda.synchronize().
"""
import json
import statistics
import sys
import time

import torch
from safetensors.torch import load_file


def median_ms(fn, runs, device="cpu"):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3 if device == "cuda" else 1):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main():
    root = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 10
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    dtype = torch.float16 if "--fp16" in sys.argv else torch.float32
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    model = f"{root}/model"
    ref = f"{root}/reference"
    out = {}
    torch.set_grad_enabled(False)

    te = CLIPTextModel.from_pretrained(f"{model}/text_encoder", variant="fp16", torch_dtype=dtype)
    te = te.eval().to(device)
    ids = load_file(f"{ref}/text_encoder.io.safetensors")["in.input_ids"].long().to(device)
    out["text_encoder"] = median_ms(lambda: te(ids), runs, device)

    unet = UNet2DConditionModel.from_pretrained(f"{model}/unet", variant="fp16", torch_dtype=dtype)
    unet = unet.eval().to(device)
    u = load_file(f"{ref}/unet.io.safetensors")
    sample, t = u["in.sample"].to(device, dtype), u["in.timestep"].to(device, dtype)
    ehs = u["in.encoder_hidden_states"].squeeze(2).transpose(1, 2)  # (B, C, 1, S) → (B, S, C)
    ehs = ehs.to(device, dtype)
    out["unet"] = median_ms(lambda: unet(sample, t, ehs), runs, device)

    vae = AutoencoderKL.from_pretrained(f"{model}/vae", variant="fp16", torch_dtype=dtype)
    vae = vae.eval().to(device)
    z = load_file(f"{ref}/vae_decoder.io.safetensors")["in.z"].to(device, dtype)
    out["vae_decoder"] = median_ms(lambda: vae.decode(z), runs, device)

    out["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    out["dtype"] = str(dtype)
    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
