"""PyTorch CPU peer for the sd-runtime benchmark: times the tiny text encoder, UNet and VAE
decoder from the diffusers folder on the reference inputs and prints one JSON object
{"text_encoder": ms, "unet": ms, "vae_decoder": ms} (median of --runs runs, after a warm-up).

Run with the reference venv: target/reference-venv/bin/python torch_peer.py FIXTURES_DIR
"""
import json
import statistics
import sys
import time

import torch
from safetensors.torch import load_file


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main():
    root = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    dtype = torch.float16 if "--fp16" in sys.argv else torch.float32
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    model = f"{root}/model"
    ref = f"{root}/reference"
    out = {}
    torch.set_grad_enabled(False)

    te = CLIPTextModel.from_pretrained(f"{model}/text_encoder", variant="fp16", torch_dtype=dtype).eval()
    ids = load_file(f"{ref}/text_encoder.io.safetensors")["in.input_ids"].long()
    out["text_encoder"] = median_ms(lambda: te(ids), runs)

    unet = UNet2DConditionModel.from_pretrained(f"{model}/unet", variant="fp16", torch_dtype=dtype).eval()
    u = load_file(f"{ref}/unet.io.safetensors")
    sample, t = u["in.sample"].to(dtype), u["in.timestep"].to(dtype)
    ehs = u["in.encoder_hidden_states"].squeeze(2).transpose(1, 2).to(dtype)  # (B, C, 1, S) → (B, S, C)
    out["unet"] = median_ms(lambda: unet(sample, t, ehs), runs)

    vae = AutoencoderKL.from_pretrained(f"{model}/vae", variant="fp16", torch_dtype=dtype).eval()
    z = load_file(f"{ref}/vae_decoder.io.safetensors")["in.z"].to(dtype)
    out["vae_decoder"] = median_ms(lambda: vae.decode(z), runs)

    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
