"""Full-size SD 1.5 UNet on CUDA, PyTorch side (for the sd-runtime CUDA benchmark, where the
1.7 GB checkpoint cannot travel to the GPU machine): makes a random-weight UNet from its
diffusers config, the inputs of one denoising step at batch 2 and 64x64 latents, PyTorch's
fp32 output on them, and times PyTorch on the GPU.

    python cuda_unet_full.py CONFIG.json OUT_DIR [RUNS] [--make-only]

writes OUT_DIR/sd15/unet/{config.json, diffusion_pytorch_model.safetensors} (fp16 weights,
seeded default init; a folder `sd convert --model-version OUT_DIR/sd15 --convert-unet` reads)
and OUT_DIR/unet_step.safetensors (`in.sample` (2, 4, 64, 64) for SD 1.5's config, `in.timestep`
[981, 601], `in.encoder_hidden_states` (2, 768, 1, 77) in the Core ML layout, `out.noise_pred`: PyTorch fp32
with TF32 off), then prints one JSON line of median step times (ms) in fp16 and fp32
(SDPA attention, 3 warm-ups, torch.cuda.synchronize() after each run). `--make-only` only
writes the UNet folder (CPU work, no GPU); a later run reuses a folder that exists.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_ms(fn, runs):
    for _ in range(3):
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
    config, out = Path(sys.argv[1]), Path(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 10
    from diffusers import UNet2DConditionModel

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    cfg = json.loads(config.read_text())
    folder = out / "sd15" / "unet"
    if (folder / "config.json").is_file():
        unet = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float16).eval()
    else:
        unet = UNet2DConditionModel.from_config(cfg).eval().half()
        unet.save_pretrained(folder, safe_serialization=True)
    if "--make-only" in sys.argv:
        return

    g = torch.Generator().manual_seed(1)
    side, width = cfg["sample_size"], cfg["cross_attention_dim"]
    sample = torch.randn(2, cfg["in_channels"], side, side, generator=g)
    timestep = torch.tensor([981.0, 601.0])
    ehs = torch.randn(2, 77, width, generator=g)  # (B, S, C)

    dev = os.environ.get("SD_PEER_DEVICE", "cuda")  # "cpu" only to try the script
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if dev == "cuda" else dev
    res = {"device": name, "torch": torch.__version__, "runs": runs}
    unet32 = unet.float().to(dev)
    args32 = (sample.to(dev), timestep.to(dev), ehs.to(dev))
    ref = unet32(*args32).sample.float().cpu()
    save_file(
        {
            "in.sample": sample.contiguous(),
            "in.timestep": timestep.contiguous(),
            "in.encoder_hidden_states": ehs.transpose(1, 2).unsqueeze(2).contiguous(),
            "out.noise_pred": ref.contiguous(),
        },
        str(out / "unet_step.safetensors"),
    )
    res["fp32_ms"] = median_ms(lambda: unet32(*args32), runs)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    res["fp32_tf32_ms"] = median_ms(lambda: unet32(*args32), runs)
    unet16 = unet32.half()
    args16 = tuple(a.half() for a in args32)
    res["fp16_ms"] = median_ms(lambda: unet16(*args16), runs)
    print("TORCH_FULL_UNET " + json.dumps(res))


if __name__ == "__main__":
    main()
