"""Single-file checkpoints (original LDM / CompVis key names) and PyTorch pickles: fixtures/models/.

Each single file has a diffusers twin folder holding the same weights under diffusers' names, so a
converter can be checked by converting both and comparing the packages byte for byte:

- sd1-micro/: a small SD 1.x-architecture pipeline (CLIP text encoder, UNet with three levels, the
  last without attention, 2 resnets per level, VAE), fp16, with `variant="fp16"` file names.
- sd2-micro/: a small SD 2.x-architecture pipeline (OpenCLIP-style text encoder with gelu,
  `use_linear_projection`, per-level heads), fp16.
- single-file/sd1-micro.safetensors, sd1-micro.ckpt (`torch.save({"state_dict": ...})`, zip
  format, with `global_step` and `epoch` beside it), sd2-micro.safetensors: the twins' weights
  under LDM names: `model.diffusion_model.*` (input_blocks / middle_block / output_blocks),
  `first_stage_model.*` (encoder.down.N.block.M, decoder.up reversed, mid.attn_1 as 1x1 convs),
  `cond_stage_model.transformer.text_model.*` (SD1) or `cond_stage_model.model.*` (SD2,
  OpenCLIP: fused `attn.in_proj_weight`, `resblocks`, `ln_final`, `text_projection`, one more
  resblock than the diffusers text encoder uses, as SD 2.x's 24 of which diffusers keeps 23).
  Plus what real checkpoints carry beside the weights: `betas`, `alphas_cumprod`,
  `model_ema.decay`, `model_ema.num_updates`, CLIP's int64 `position_ids`.
- sd1-micro-bin/: PyTorch pickles of sd1-micro components as diffusers writes them with
  `safe_serialization=False`: `vae/diffusion_pytorch_model.bin` (float32) and
  `text_encoder/pytorch_model.fp16.bin` (fp16 variant).

The inverse mapping (diffusers -> LDM) is written here; every file is then read back through
diffusers' own single-file conversion functions (diffusers.loaders.single_file_utils), which must
give the twin's tensors exactly.

Run: python gen_single_file.py --out fixtures
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from common import fresh_dir, log, parse_args, perturb_constant_params, save_json, save_tensors, seed

import torch  # noqa: E402

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."


def clip_text_config(hidden_size: int, intermediate_size: int, hidden_act: str):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=512, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        hidden_act=hidden_act, projection_dim=16, layer_norm_eps=1e-5, bos_token_id=0,
        eos_token_id=2, pad_token_id=1,
    )


def vae_config() -> dict:
    """The VAE both micro pipelines use."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=4, sample_size=32,
        scaling_factor=0.18215,
    )


def sd1_configs():
    te = clip_text_config(hidden_size=16, intermediate_size=24, hidden_act="quick_gelu")
    unet = dict(
        sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(4, 8, 8), layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=16, norm_num_groups=4,
    )
    return te, unet, vae_config()


def sd2_configs():
    te = clip_text_config(hidden_size=8, intermediate_size=32, hidden_act="gelu")
    unet = dict(
        sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(4, 8), layers_per_block=1, attention_head_dim=(2, 4),
        cross_attention_dim=8, use_linear_projection=True, upcast_attention=True,
        norm_num_groups=4,
    )
    return te, unet, vae_config()


# --- diffusers -> LDM names ------------------------------------------------------------------

RESNET_TO_LDM = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
    "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection",
}


def unet_to_ldm(sd: dict, cfg: dict) -> dict:
    """UNet2DConditionModel names -> LDM `openaimodel.UNetModel` names (without prefix)."""
    per = cfg["layers_per_block"] + 1
    attn_up = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]
    top = {
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
    }
    out = {}
    for key, value in sd.items():
        p = key.split(".")
        head = ".".join(p[:-1])
        if head in top:
            new = f"{top[head]}.{p[-1]}"
        elif p[0] == "down_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "resnets":
                new = f"input_blocks.{1 + b * per + int(p[3])}.0.{RESNET_TO_LDM[p[4]]}.{p[5]}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + b * per + int(p[3])}.1." + ".".join(p[4:])
            elif kind == "downsamplers":  # downsamplers.0.conv.<w|b>
                new = f"input_blocks.{1 + b * per + per - 1}.0.op.{p[5]}"
            else:
                raise KeyError(key)
        elif p[0] == "mid_block":
            if p[1] == "resnets":
                new = f"middle_block.{2 * int(p[2])}.{RESNET_TO_LDM[p[3]]}.{p[4]}"
            else:
                new = "middle_block.1." + ".".join(p[3:])
        elif p[0] == "up_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "resnets":
                new = f"output_blocks.{b * per + int(p[3])}.0.{RESNET_TO_LDM[p[4]]}.{p[5]}"
            elif kind == "attentions":
                new = f"output_blocks.{b * per + int(p[3])}.1." + ".".join(p[4:])
            elif kind == "upsamplers":  # after the attention when the level has one
                slot = 2 if attn_up[b] else 1
                new = f"output_blocks.{b * per + per - 1}.{slot}.conv.{p[5]}"
            else:
                raise KeyError(key)
        else:
            raise KeyError(key)
        assert new not in out, new
        out[new] = value
    return out


VAE_ATTN_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                   "to_out": "proj_out"}


def vae_to_ldm(sd: dict, cfg: dict) -> dict:
    """AutoencoderKL names -> LDM `AutoencoderKL` names; attention linears become 1x1 convs."""
    n = len(cfg["block_out_channels"])
    out = {}
    for key, value in sd.items():
        p = key.split(".")
        side = p[0]
        if p[0] in ("quant_conv", "post_quant_conv"):
            new = key
        elif p[1] in ("conv_in", "conv_out"):
            new = key
        elif p[1] == "conv_norm_out":
            new = f"{side}.norm_out.{p[2]}"
        elif p[1] in ("down_blocks", "up_blocks"):
            i = int(p[2])
            level = i if side == "encoder" else n - 1 - i
            word = "down" if side == "encoder" else "up"
            if p[3] == "resnets":
                name = "nin_shortcut" if p[5] == "conv_shortcut" else p[5]
                new = f"{side}.{word}.{level}.block.{p[4]}.{name}.{p[6]}"
            else:  # downsamplers.0.conv / upsamplers.0.conv
                new = f"{side}.{word}.{level}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{p[6]}"
        elif p[1] == "mid_block":
            if p[2] == "resnets":
                new = f"{side}.mid.block_{int(p[3]) + 1}.{p[4]}.{p[5]}"
            else:  # attentions.0.<group_norm|to_q|to_k|to_v|to_out.0>.<w|b>
                new = f"{side}.mid.attn_1.{VAE_ATTN_TO_LDM[p[4]]}.{p[-1]}"
                if p[-1] == "weight" and value.dim() == 2:
                    value = value[:, :, None, None]
        else:
            raise KeyError(key)
        assert new not in out, new
        out[new] = value.contiguous()
    return out


def open_clip_from_clip(sd: dict, hidden: int, extra_layer: dict, proj: torch.Tensor) -> dict:
    """CLIPTextModel names -> OpenCLIP text tower names (q/k/v fused into in_proj), plus one
    more resblock (`extra_layer`, OpenCLIP names) and a `text_projection`."""
    out = {}
    layers = set()
    for key, value in sd.items():
        p = key.split(".")
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[f"ln_final.{p[-1]}"] = value
        elif key.startswith("text_model.encoder.layers."):
            i = int(p[3])
            layers.add(i)
            rest = ".".join(p[4:])
            base = f"transformer.resblocks.{i}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                continue  # fused below
            rest = (rest.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
                    .replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj")
                    .replace("self_attn.out_proj", "attn.out_proj"))
            out[base + rest] = value
        else:
            raise KeyError(key)
    for i in sorted(layers):
        a = f"text_model.encoder.layers.{i}.self_attn."
        out[f"transformer.resblocks.{i}.attn.in_proj_weight"] = torch.cat(
            [sd[a + f"{x}_proj.weight"] for x in "qkv"], 0).contiguous()
        out[f"transformer.resblocks.{i}.attn.in_proj_bias"] = torch.cat(
            [sd[a + f"{x}_proj.bias"] for x in "qkv"], 0).contiguous()
    last = max(layers) + 1
    for k, v in extra_layer.items():
        out[f"transformer.resblocks.{last}.{k}"] = v
    out["text_projection"] = proj
    assert out["token_embedding.weight"].shape[1] == hidden
    return out


def extra_open_clip_layer(hidden: int, inner: int, gen_seed: int) -> dict:
    """One OpenCLIP resblock of seeded noise (the layer SD 2.x checkpoints have and diffusers
    drops)."""
    g = torch.Generator().manual_seed(gen_seed)

    def r(*shape):
        return (torch.randn(shape, generator=g) * 0.02).half()

    return {
        "ln_1.weight": r(hidden), "ln_1.bias": r(hidden),
        "attn.in_proj_weight": r(3 * hidden, hidden), "attn.in_proj_bias": r(3 * hidden),
        "attn.out_proj.weight": r(hidden, hidden), "attn.out_proj.bias": r(hidden),
        "ln_2.weight": r(hidden), "ln_2.bias": r(hidden),
        "mlp.c_fc.weight": r(inner, hidden), "mlp.c_fc.bias": r(inner),
        "mlp.c_proj.weight": r(hidden, inner), "mlp.c_proj.bias": r(hidden),
    }


def ldm_extras() -> dict:
    """What LDM checkpoints carry beside the three networks (float32 schedule buffers, EMA
    counters), none of which a converter reads."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return {
        "betas": betas.float(),
        "alphas_cumprod": torch.cumprod(1.0 - betas, 0).float(),
        "model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
        "model_ema.num_updates": torch.tensor(0, dtype=torch.int32),
    }


# --- building the models ---------------------------------------------------------------------

def make_pipeline(dest: Path, configs, seeds, text_cls_name: str) -> dict:
    """Writes a diffusers folder (fp16 variant files) and returns its state dicts and configs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from gen_models import legacy_key_names, model_index

    te_cfg, unet_cfg, vae_cfg = configs
    fresh_dir(dest)
    seed(seeds[0])
    te = CLIPTextModel(te_cfg).eval()
    perturb_constant_params(te, seeds[0] + 100)
    seed(seeds[1])
    unet = UNet2DConditionModel(**unet_cfg).eval()
    perturb_constant_params(unet, seeds[1] + 100)
    seed(seeds[2])
    vae = AutoencoderKL(**vae_cfg).eval()
    perturb_constant_params(vae, seeds[2] + 100)
    parts = {}
    for name, model in (("text_encoder", te), ("unet", unet), ("vae", vae)):
        model.to(torch.float16).save_pretrained(str(dest / name), variant="fp16",
                                                safe_serialization=True)
        legacy_key_names(dest / name)
        from safetensors.torch import load_file

        files = sorted((dest / name).glob("*.safetensors"))
        assert len(files) == 1, files
        parts[name] = load_file(str(files[0]))
    index = model_index("PNDMScheduler")
    index["text_encoder"] = ["transformers", text_cls_name]
    for k in ("scheduler", "tokenizer", "safety_checker", "feature_extractor", "image_encoder"):
        index[k] = [None, None]
    save_json(dest / "model_index.json", index)
    parts["configs"] = {
        "unet": json.loads((dest / "unet/config.json").read_text()),
        "vae": json.loads((dest / "vae/config.json").read_text()),
        "text_encoder": te_cfg,
    }
    return parts


def check_same(name: str, got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want), (
        name, sorted(set(got) ^ set(want))[:10])
    for k, v in want.items():
        g = got[k]
        assert g.shape == v.shape and g.dtype == v.dtype and torch.equal(g, v), (name, k)


def check_with_diffusers(ldm: dict, parts: dict, open_clip: bool) -> None:
    """diffusers' single-file conversion of `ldm` must give the twin's tensors exactly."""
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextModel

    cfgs = parts["configs"]
    unet = sfu.convert_ldm_unet_checkpoint(dict(ldm), cfgs["unet"])
    check_same("unet", unet, parts["unet"])
    vae = sfu.convert_ldm_vae_checkpoint(dict(ldm), cfgs["vae"])
    check_same("vae", vae, parts["vae"])
    if open_clip:
        with torch.device("meta"):
            model = CLIPTextModel(cfgs["text_encoder"])
        te = sfu.convert_open_clip_checkpoint(model, dict(ldm), prefix=OPEN_CLIP_PREFIX)
        # diffusers drops the last resblock only at SD 2.x's index 23; the micro model's extra
        # layer is the one after the last the text encoder uses.
        n = cfgs["text_encoder"].num_hidden_layers
        extra = {k for k in te if k.startswith(f"text_model.encoder.layers.{n}.")}
        assert len(extra) == 16, sorted(extra)
        te = {k: v for k, v in te.items() if k not in extra}
    else:
        te = sfu.convert_ldm_clip_checkpoint(dict(ldm))
        te.pop("text_model.embeddings.position_ids")
    check_same("text_encoder", te, parts["text_encoder"])


def ldm_state_dict(parts: dict, open_clip: bool, gen_seed: int) -> dict:
    cfgs = parts["configs"]
    sd = {}
    sd.update({UNET_PREFIX + k: v for k, v in unet_to_ldm(parts["unet"], cfgs["unet"]).items()})
    sd.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(parts["vae"], cfgs["vae"]).items()})
    te_cfg = cfgs["text_encoder"]
    if open_clip:
        g = torch.Generator().manual_seed(gen_seed)
        proj = (torch.randn((te_cfg.hidden_size, te_cfg.projection_dim), generator=g)
                * te_cfg.hidden_size ** -0.5).half()
        extra = extra_open_clip_layer(te_cfg.hidden_size, te_cfg.intermediate_size, gen_seed + 1)
        te = open_clip_from_clip(parts["text_encoder"], te_cfg.hidden_size, extra, proj)
        sd.update({OPEN_CLIP_PREFIX + k: v for k, v in te.items()})
    else:
        sd.update({CLIP_PREFIX + k: v for k, v in parts["text_encoder"].items()})
        sd[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(
            te_cfg.max_position_embeddings, dtype=torch.int64)[None]
    sd.update(ldm_extras())
    return dict(sorted(sd.items()))


def torch_save(obj, path: Path) -> None:
    """torch.save (zip format) through a buffer, so the archive's inner folder is always
    `archive/` whatever the file is called."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def check_pickle(path: Path, want: dict, key: str | None = None) -> None:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if key is not None:
        obj = obj[key]
    check_same(path.name, obj, want)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    models = args.out / "models"
    single = fresh_dir(models / "single-file")

    sd1 = make_pipeline(models / "sd1-micro", sd1_configs(), (7001, 7002, 7003), "CLIPTextModel")
    ldm1 = ldm_state_dict(sd1, open_clip=False, gen_seed=7004)
    check_with_diffusers(ldm1, sd1, open_clip=False)
    save_tensors(single / "sd1-micro.safetensors", ldm1)
    ckpt = {"epoch": 6, "global_step": 470000, "state_dict": ldm1}
    torch_save(ckpt, single / "sd1-micro.ckpt")
    check_pickle(single / "sd1-micro.ckpt", ldm1, "state_dict")
    log("sd1-micro: diffusers folder, .safetensors and .ckpt written")

    sd2 = make_pipeline(models / "sd2-micro", sd2_configs(), (7101, 7102, 7103), "CLIPTextModel")
    ldm2 = ldm_state_dict(sd2, open_clip=True, gen_seed=7104)
    check_with_diffusers(ldm2, sd2, open_clip=True)
    save_tensors(single / "sd2-micro.safetensors", ldm2)
    log("sd2-micro: diffusers folder and .safetensors written")

    bins = fresh_dir(models / "sd1-micro-bin")
    for part, file, dtype in (("text_encoder", "pytorch_model.bin", torch.float32),):
        (bins / part).mkdir()
        (bins / part / "config.json").write_bytes((models / "sd1-micro" / part / "config.json")
                                                  .read_bytes())
        sd = {k: v.to(dtype) for k, v in sorted(sd1[part].items())}
        torch_save(sd, bins / part / file)
        check_pickle(bins / part / file, sd)
    log("sd1-micro-bin: text_encoder (float32) pickle written")


if __name__ == "__main__":
    main()
