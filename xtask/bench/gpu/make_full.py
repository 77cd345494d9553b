"""Completes a full-size random-weight SD 1.5 folder on the GPU machine (where only PyTorch,
numpy and a carried diffusers wheel exist, no transformers): adds the CLIP-L text encoder
(weights drawn with numpy under transformers' names), the VAE (diffusers' AutoencoderKL at
SD 1.5's config, default init) and the tokenizer, scheduler and model index of the tiny
fixture, beside the UNet that `crates/sd-runtime/benches/cuda_unet_full.py` wrote.

    python make_full.py REPO OUT_DIR/sd15 [--small]

`--small` writes a 2-layer, 64-wide text encoder and skips the VAE (to try the script on a
machine without a GPU).
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def text_encoder(folder: Path, width: int, layers: int, heads: int, inner: int) -> None:
    rng = np.random.default_rng(7)
    w = {}

    def normal(name, shape, std=0.02):
        w[name] = (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float16)

    p = "text_model."
    normal(p + "embeddings.token_embedding.weight", (49408, width))
    normal(p + "embeddings.position_embedding.weight", (77, width), 0.01)
    for i in range(layers):
        q = f"{p}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            normal(q + f"self_attn.{proj}.weight", (width, width))
            normal(q + f"self_attn.{proj}.bias", (width,))
        for norm in ("layer_norm1", "layer_norm2"):
            w[q + f"{norm}.weight"] = np.ones(width, np.float16)
            w[q + f"{norm}.bias"] = np.zeros(width, np.float16)
        normal(q + "mlp.fc1.weight", (inner, width))
        normal(q + "mlp.fc1.bias", (inner,))
        normal(q + "mlp.fc2.weight", (width, inner))
        normal(q + "mlp.fc2.bias", (width,))
    w[p + "final_layer_norm.weight"] = np.ones(width, np.float16)
    w[p + "final_layer_norm.bias"] = np.zeros(width, np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(w, str(folder / "model.safetensors"))
    config = dict(
        architectures=["CLIPTextModel"], attention_dropout=0.0, bos_token_id=0, eos_token_id=2,
        hidden_act="quick_gelu", hidden_size=width, initializer_factor=1.0,
        initializer_range=0.02, intermediate_size=inner, layer_norm_eps=1e-5,
        max_position_embeddings=77, model_type="clip_text_model", num_attention_heads=heads,
        num_hidden_layers=layers, pad_token_id=1, projection_dim=width, torch_dtype="float16",
        vocab_size=49408,
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def vae(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(3)
    model = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
        scaling_factor=0.18215,
    ).half()
    model.save_pretrained(str(folder), safe_serialization=True)


def main() -> None:
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    small = "--small" in sys.argv
    tiny = repo / "fixtures/models/sd1-tiny"
    out.mkdir(parents=True, exist_ok=True)
    for part in ("tokenizer", "scheduler"):
        shutil.copytree(tiny / part, out / part, dirs_exist_ok=True)
    shutil.copy(tiny / "model_index.json", out / "model_index.json")
    if small:
        text_encoder(out / "text_encoder", 64, 2, 4, 128)
    else:
        text_encoder(out / "text_encoder", 768, 12, 12, 3072)
        vae(out / "vae")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
