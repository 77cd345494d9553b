"""A full-size random-weight Stable Diffusion folder (diffusers layout, fp16 safetensors) for
benchmarks and scale tests: `cargo xtask reference --full sd15|sd21` (default target/full/<name>).
Not a fixture: never committed. Same recipe as the tiny models (seeded init, constant parameters
perturbed), at the real SD 1.5 / SD 2.1 architectures.

Run: python full_model.py --model sd15 --out target/full/sd15
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import REPO, fresh_dir, log, perturb_constant_params, save_json, seed

import torch  # noqa: E402


def configs(model: str):
    from diffusers import DDIMScheduler, PNDMScheduler
    from transformers import CLIPTextConfig

    unet = dict(
        in_channels=4, out_channels=4, layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280), norm_num_groups=32,
    )
    vae = dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), norm_num_groups=32, scaling_factor=0.18215,
    )
    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear", set_alpha_to_one=False, steps_offset=1)
    if model == "sd15":
        te = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                            num_hidden_layers=12, num_attention_heads=12,
                            max_position_embeddings=77, hidden_act="quick_gelu",
                            projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
        unet.update(sample_size=64, attention_head_dim=8, cross_attention_dim=768)
        vae.update(sample_size=512)
        sched = PNDMScheduler(skip_prk_steps=True, prediction_type="epsilon", **betas)
        pad = "<|endoftext|>"
    elif model == "sd21":
        te = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                            num_hidden_layers=23, num_attention_heads=16,
                            max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                            bos_token_id=0, eos_token_id=2, pad_token_id=1)
        unet.update(sample_size=96, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                    use_linear_projection=True, upcast_attention=True)
        vae.update(sample_size=768)
        sched = DDIMScheduler(clip_sample=False, prediction_type="v_prediction", **betas)
        pad = "!"
    else:
        raise SystemExit(f"unknown model {model}")
    return te, unet, vae, sched, pad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["sd15", "sd21"], required=True)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    out = (a.out or REPO / "target/full" / a.model).resolve()

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from gen_models import model_index, save_fp16, write_clip_tokenizer

    te_cfg, unet_cfg, vae_cfg, sched, pad = configs(a.model)
    fresh_dir(out)
    for i, (name, build) in enumerate([
        ("text_encoder", lambda: CLIPTextModel(te_cfg)),
        ("unet", lambda: UNet2DConditionModel(**unet_cfg)),
        ("vae", lambda: AutoencoderKL(**vae_cfg)),
    ]):
        seed(9000 + i)
        m = build().eval()
        perturb_constant_params(m, 9100 + i)
        n = sum(p.numel() for p in m.parameters())
        save_fp16(m, out / name)
        del m
        log(f"{a.model}/{name}: {n / 1e6:.1f}M parameters")
    sched.save_pretrained(str(out / "scheduler"))
    write_clip_tokenizer(out / "tokenizer", pad_token=pad, link=False)
    save_json(out / "model_index.json", model_index(type(sched).__name__))
    log(f"written to {out}")


if __name__ == "__main__":
    main()
