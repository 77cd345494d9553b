"""Random-weight Stable Diffusion models as diffusers folders: fixtures/models/.

- sd1-tiny: a verbatim copy of ../shared/fixtures/apple-tiny/model (the weights Apple's converter
  was run on); checked against recorded sha256 sums, so the copy is reproducible.
- sd2-tiny: SD 2.x architecture (gelu text encoder, use_linear_projection, per-level heads,
  upcast_attention, v_prediction DDIM scheduler, "!" padding), made here.
- inpaint-tiny: a 9-input-channel UNet (the other components are sd1-tiny's).
- controlnet-tiny: a ControlNet made from sd1-tiny's UNet (ControlNetModel.from_unet).
- safety-checker-tiny: StableDiffusionSafetyChecker with a tiny CLIP vision tower.
- projection-tiny: the multilingual projection layer (Linear 512 -> 32, sd1-tiny's width).

Run: python gen_models.py --out fixtures
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common import (
    REPO,
    fresh_dir,
    log,
    parse_args,
    perturb_constant_params,
    round_to_fp16,
    safety_probes,
    save_json,
    save_tensors,
    seed,
    sha256,
)

from gen_tokenizer import write_vocab  # noqa: E402

import torch  # noqa: E402

# The apple-tiny model folder, file by file (the fixture is a byte-for-byte copy of it).
SD1_FILES = {
    "model_index.json": "7187f470eaafb733815488125cf8972d704748e4ba6dbe1b535c869425749632",
    "scheduler/scheduler_config.json": "3abc26cd7e17af9c11ab14daeaae6fcc077ee3b54743536a8c3e4230db89e4f0",
    "text_encoder/config.json": "57b44efb341826e91e85cdc12b1a516facc86e1b6679b2c2a07aec0d09abd4b7",
    "text_encoder/model.fp16.safetensors": "deedfc823ab17e9818364a40dd9ea820133a5997e9a80407413eb8d63472ebac",
    "tokenizer/merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
    "tokenizer/special_tokens_map.json": "c4864a9376a8401918425bed71fc14fc0e81f9b59ec45c1cf96cccb2df508eac",
    "tokenizer/tokenizer_config.json": "2a097f06d64fec6fa5da994657bf68de191fc4ec476cd3257ba7fa2f7fc13b78",
    "tokenizer/vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "unet/config.json": "e414140eab3a223c618dd9c271c7a22726785e5cb1938ee3b56c1d2596e7e73a",
    "unet/diffusion_pytorch_model.fp16.safetensors": "85ad1a2d7e5bde81a95ab70b3c607afc8f245d342055ab716a375e41087c45fa",
    "vae/config.json": "051753948613605a6185ddd7b38322614436550f1de2f5377cbdb78ac2089a43",
    "vae/diffusion_pytorch_model.fp16.safetensors": "15f9fa1f8048417147a86e49d3fe5477a26d54fd16ace977d0b5a72c84c0551e",
}


# Stored once, in fixtures/tokenizer/ (rebuilt from open-clip's BPE file); the model folders'
# tokenizer/ hold relative symbolic links to them, to keep the fixtures small.
SHARED_TOKENIZER_FILES = ("vocab.json", "merges.txt")


def sd1_matches(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                     if p.is_file() or p.is_symlink())
    if present != sorted(SD1_FILES):
        return False
    return all((folder / rel).exists() and sha256(folder / rel) == want
               for rel, want in SD1_FILES.items())


def link_tokenizer_files(tok_dir: Path) -> None:
    """tokenizer/vocab.json -> ../../../tokenizer/vocab.json (and merges.txt)."""
    tok_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_TOKENIZER_FILES:
        p = tok_dir / name
        if p.exists() or p.is_symlink():
            p.unlink()
        p.symlink_to(Path("../../../tokenizer") / name)


def make_sd1(dest: Path) -> None:
    """Copies apple-tiny's model folder (or keeps an identical copy already in place)."""
    if sd1_matches(dest):
        log("sd1-tiny: present and identical to apple-tiny/model, kept")
        link_tokenizer_files(dest / "tokenizer")
        return
    src = Path(os.environ.get("APPLE_TINY_MODEL", REPO.parent / "shared/fixtures/apple-tiny/model"))
    if not sd1_matches(src):
        raise SystemExit(
            f"sd1-tiny: {dest} is missing or altered and {src} is not the apple-tiny model folder "
            "(set APPLE_TINY_MODEL to it)"
        )
    fresh_dir(dest)
    for rel in sorted(SD1_FILES):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("tokenizer/") and rel.split("/")[1] in SHARED_TOKENIZER_FILES:
            continue
        shutil.copyfile(src / rel, dest / rel)
    link_tokenizer_files(dest / "tokenizer")
    if not sd1_matches(dest):
        raise SystemExit("sd1-tiny: the copy differs from apple-tiny/model (tokenizer files?)")
    log(f"sd1-tiny: copied from {src}")


def write_clip_tokenizer(dest: Path, pad_token: str, link: bool = True) -> None:
    """A CLIPTokenizer folder in the usual diffusers form: vocab.json + merges.txt (links to
    fixtures/tokenizer/, or real files when `link` is false), and the config files as
    transformers 4 wrote them (pad "<|endoftext|>" for SD1, "!" for SD2)."""
    if link:
        link_tokenizer_files(dest)
    else:
        write_vocab(dest)

    def special(content):
        return {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": False}

    added = {"49406": dict(special("<|startoftext|>"), special=True),
             "49407": dict(special("<|endoftext|>"), special=True)}
    if pad_token == "!":
        added["0"] = dict(special("!"), special=True)
    save_json(dest / "tokenizer_config.json", {
        "added_tokens_decoder": added,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    })
    save_json(dest / "special_tokens_map.json", {
        "bos_token": special("<|startoftext|>"),
        "eos_token": special("<|endoftext|>"),
        "pad_token": special(pad_token) if pad_token == "!" else pad_token,
        "unk_token": special("<|endoftext|>"),
    })


def save_fp16(model, dest: Path) -> None:
    """save_pretrained in fp16 with variant="fp16" file names (as the SD repositories do)."""
    model.to(torch.float16).save_pretrained(str(dest), variant="fp16", safe_serialization=True)
    model.to(torch.float32)
    legacy_key_names(dest)


def legacy_key_names(dest: Path) -> None:
    """transformers 5 saves CLIP models with flattened names ("embeddings.…" for CLIPTextModel,
    "vision_model.embeddings.…" in the safety checker); every published SD checkpoint has the
    transformers 4 names ("text_model.embeddings.…", "vision_model.vision_model.embeddings.…"),
    which transformers 5 still loads. Rewrite the weight file to the published names."""
    import json as _json

    from safetensors.torch import load_file

    cfg = _json.loads((dest / "config.json").read_text())
    arch = (cfg.get("architectures") or [None])[0]
    if arch == "CLIPTextModel":
        def rename(k):
            return k if k.startswith("text_model.") else "text_model." + k
    elif arch == "StableDiffusionSafetyChecker":
        def rename(k):
            if k.startswith("vision_model.") and not k.startswith("vision_model.vision_model."):
                return "vision_model." + k
            return k
    else:
        return
    for f in sorted(dest.glob("*.safetensors")):
        tensors = load_file(str(f))
        save_tensors(f, {rename(k): v for k, v in tensors.items()})


def sd2_configs():
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig

    te = CLIPTextConfig(
        vocab_size=49408, hidden_size=16, intermediate_size=40, num_hidden_layers=4,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
        projection_dim=16, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    unet = dict(
        sample_size=40, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1,
        attention_head_dim=(4, 2),  # diffusers' (mis)name: heads per level -> d_head 8 and 32
        cross_attention_dim=16, use_linear_projection=True, upcast_attention=True,
        norm_num_groups=16,
    )
    vae = dict(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8,
        sample_size=320, scaling_factor=0.18215,
    )
    sched = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
        timestep_spacing="leading",
    )
    return te, unet, vae, sched, UNet2DConditionModel, AutoencoderKL


def make_sd2(dest: Path) -> None:
    from transformers import CLIPTextModel

    te_cfg, unet_cfg, vae_cfg, sched, UNet, VAE = sd2_configs()
    fresh_dir(dest)
    seed(2001)
    te = CLIPTextModel(te_cfg).eval()
    perturb_constant_params(te, 2101)
    save_fp16(te, dest / "text_encoder")
    back = CLIPTextModel.from_pretrained(str(dest / "text_encoder"), variant="fp16",
                                         dtype=torch.float32)
    ref = te.state_dict()
    for k, v in back.state_dict().items():
        assert torch.equal(v, ref[k].half().float()), k
    seed(2002)
    unet = UNet(**unet_cfg).eval()
    perturb_constant_params(unet, 2102)
    save_fp16(unet, dest / "unet")
    seed(2003)
    vae = VAE(**vae_cfg).eval()
    perturb_constant_params(vae, 2103)
    save_fp16(vae, dest / "vae")
    sched.save_pretrained(str(dest / "scheduler"))
    write_clip_tokenizer(dest / "tokenizer", pad_token="!")
    save_json(dest / "model_index.json", model_index("DDIMScheduler"))
    log("sd2-tiny: written")


def model_index(scheduler: str) -> dict:
    import diffusers

    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", scheduler],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def sd1_unet_config(sd1: Path) -> dict:
    import json

    cfg = json.loads((sd1 / "unet/config.json").read_text())
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def make_inpaint(dest: Path, sd1: Path) -> None:
    from diffusers import UNet2DConditionModel

    cfg = sd1_unet_config(sd1)
    cfg.update(in_channels=9, layers_per_block=1, block_out_channels=[32, 32])
    fresh_dir(dest)
    seed(3001)
    unet = UNet2DConditionModel(**cfg).eval()
    perturb_constant_params(unet, 3101)
    save_fp16(unet, dest / "unet")
    log("inpaint-tiny: written")


def make_controlnet(dest: Path, sd1: Path) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    fresh_dir(dest)
    unet = UNet2DConditionModel.from_pretrained(str(sd1 / "unet"), variant="fp16",
                                                dtype=torch.float32)
    seed(4001)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32)).eval()
    # The zero convolutions start at zero: give them visible weights (x0.1), everything else that
    # is constant gets the usual x0.02 noise.
    g = torch.Generator().manual_seed(4102)
    for name, p in sorted(cn.named_parameters(), key=lambda kv: kv[0]):
        if name.startswith(("controlnet_down_blocks", "controlnet_mid_block",
                            "controlnet_cond_embedding.conv_out")):
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.1)
    perturb_constant_params(cn, 4101)
    save_fp16(cn, dest)
    log("controlnet-tiny: written")


def make_safety_checker(dest: Path) -> None:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    fresh_dir(dest)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, image_size=64, patch_size=16,
                           hidden_act="quick_gelu", projection_dim=32),
        projection_dim=32,
    )
    seed(5001)
    sc = StableDiffusionSafetyChecker(cfg).eval()
    g = torch.Generator().manual_seed(5102)
    sc.concept_embeds.data.copy_(torch.randn(sc.concept_embeds.shape, generator=g))
    sc.special_care_embeds.data.copy_(torch.randn(sc.special_care_embeds.shape, generator=g))
    perturb_constant_params(sc, 5101)
    round_to_fp16(sc)
    # Thresholds from the two probe inputs of gen_outputs.py: the "flagged" probe crosses exactly
    # one concept threshold, the "clean" one none; special-care thresholds sit 0.05 above both
    # (so adjustment = 0.1 turns special care on).
    probes = safety_probes(cfg.vision_config.image_size)

    def cos(embeds, clip_input):
        e = sc.visual_projection(sc.vision_model(clip_input)[1])
        return (torch.nn.functional.normalize(e) @ torch.nn.functional.normalize(embeds).T)[0]

    ca, cb = cos(sc.concept_embeds, probes["flagged"][0]), cos(sc.concept_embeds, probes["clean"][0])
    w = torch.maximum(ca, cb) + 0.02
    k = int(torch.argmax(ca - cb))
    assert float(ca[k] - cb[k]) > 0.04, "probes too alike"
    w[k] = (ca[k] + cb[k]) / 2
    sa, sb = (cos(sc.special_care_embeds, probes["flagged"][0]),
              cos(sc.special_care_embeds, probes["clean"][0]))
    sc.concept_embeds_weights.data.copy_(w.half().float())
    sc.special_care_embeds_weights.data.copy_((torch.maximum(sa, sb) + 0.05).half().float())
    sc.save_pretrained(str(dest / "safety_checker"), safe_serialization=True)
    legacy_key_names(dest / "safety_checker")
    # transformers 5 must read the published names back to exactly these weights.
    back = StableDiffusionSafetyChecker.from_pretrained(str(dest / "safety_checker"),
                                                       dtype=torch.float32)
    ref = sc.state_dict()
    for k, v in back.state_dict().items():
        assert torch.equal(v, ref[k]), k
    save_json(dest / "feature_extractor/preprocessor_config.json", {
        "crop_size": {"height": 64, "width": 64},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 64},
    })
    log("safety-checker-tiny: written")


def make_projection(dest: Path) -> None:
    fresh_dir(dest)
    seed(6001)
    proj = torch.nn.Linear(512, 32)
    g = torch.Generator().manual_seed(6101)
    proj.weight.data.copy_(torch.randn(proj.weight.shape, generator=g) * (512 ** -0.5))
    proj.bias.data.copy_(torch.randn(proj.bias.shape, generator=g) * 0.02)
    save_tensors(dest / "projection.safetensors",
                 {"weight": proj.weight.data, "bias": proj.bias.data})
    save_json(dest / "config.json", {
        "embed_dim": 512, "hidden_size": 32, "max_sequence_length": 256,
        "layer": "torch.nn.Linear(512, 32): encoder_hidden_states = (x @ weight.T + bias) "
                 "transposed to (B, C, 1, S)",
    })
    log("projection-tiny: written")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_vocab(args.out / "tokenizer")
    sd1 = models / "sd1-tiny"
    make_sd1(sd1)
    make_sd2(models / "sd2-tiny")
    make_inpaint(models / "inpaint-tiny", sd1)
    make_controlnet(models / "controlnet-tiny", sd1)
    make_safety_checker(models / "safety-checker-tiny")
    make_projection(models / "projection-tiny")


if __name__ == "__main__":
    main()
