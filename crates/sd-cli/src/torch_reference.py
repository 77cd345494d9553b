"""Runs one Stable Diffusion network with diffusers/transformers (PyTorch, CPU, fp32) on the
inputs `sd convert --check-output-correctness --torch-reference` wrote, and writes its outputs
under the Core ML feature names, in Core ML's layouts.

  python torch_reference.py --probe
  python torch_reference.py COMPONENT MODEL_DIR INPUTS OUTPUTS [--variant V] [--controlnet DIR]
                            [--projection FILE] [--hidden-embeds]

COMPONENT: text_encoder, unet, control-unet, controlnet, vae_decoder, vae_encoder,
safety_checker, multilingual_projection.
Inputs and outputs are safetensors files keyed by feature name. Embedded in the `sd` binary.
"""
import sys


def probe():
    import diffusers
    import safetensors
    import torch
    import transformers

    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"transformers {transformers.__version__}, safetensors {safetensors.__version__}")


def load(kind, path, variant):
    """from_pretrained in fp32: the variant asked for, else plain files, else fp16 files."""
    import torch

    tries = [variant] if variant else [None, "fp16"]
    last = None
    for v in tries:
        try:
            return kind.from_pretrained(str(path), variant=v, dtype=torch.float32).eval()
        except (OSError, ValueError) as e:
            last = e
    raise SystemExit(f"cannot load {path}: {last}")


def bsc(x):
    """Core ML's (B, C, 1, S) -> (B, S, C)."""
    return x.squeeze(2).transpose(1, 2)


def residual_kwargs(inputs):
    names = sorted((k for k in inputs if k.startswith("additional_residual_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    if not names:
        return {}
    return dict(down_block_additional_residuals=[inputs[k] for k in names[:-1]],
                mid_block_additional_residual=inputs[names[-1]])


def run(component, model, inputs, variant, controlnet, projection, hidden_embeds):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    if component == "text_encoder":
        te = load(CLIPTextModel, f"{model}/text_encoder", variant)
        out = te(inputs["input_ids"].long(), output_hidden_states=hidden_embeds)
        if hidden_embeds:
            return {"hidden_embeds": out.hidden_states[-2], "pooled_outputs": out.pooler_output}
        return {"last_hidden_state": out.last_hidden_state, "pooled_outputs": out.pooler_output}
    if component in ("unet", "control-unet"):
        unet = load(UNet2DConditionModel, f"{model}/unet", variant)
        out = unet(inputs["sample"], inputs["timestep"],
                   encoder_hidden_states=bsc(inputs["encoder_hidden_states"]),
                   **residual_kwargs(inputs)).sample
        return {"noise_pred": out}
    if component == "controlnet":
        cn = load(ControlNetModel, controlnet, variant)
        down, mid = cn(inputs["sample"], inputs["timestep"],
                       encoder_hidden_states=bsc(inputs["encoder_hidden_states"]),
                       controlnet_cond=inputs["controlnet_cond"], conditioning_scale=1.0,
                       return_dict=False)
        return {f"additional_residual_{i}": r for i, r in enumerate(list(down) + [mid])}
    if component == "vae_decoder":
        vae = load(AutoencoderKL, f"{model}/vae", variant)
        return {"image": vae.decode(inputs["z"]).sample}
    if component == "vae_encoder":
        vae = load(AutoencoderKL, f"{model}/vae", variant)
        h = vae.encoder(inputs["x"])
        return {"latent": vae.quant_conv(h) if vae.quant_conv is not None else h}
    if component == "safety_checker":
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker)

        sc = load(StableDiffusionSafetyChecker, f"{model}/safety_checker", variant)
        return safety_checker(sc, inputs["clip_input"], inputs["images"], inputs["adjustment"])
    if component == "multilingual_projection":
        import torch.nn.functional as F
        from safetensors.torch import load_file

        w = load_file(projection_file(projection))
        weight = [k for k in w if k == "weight" or k.endswith(".weight")]
        if len(weight) != 1:
            raise SystemExit(f"{projection}: expected one Linear weight, found {weight}")
        bias = w.get(weight[0][: -len("weight")] + "bias")
        y = F.linear(inputs["nlcontextualembeddings_output"], w[weight[0]], bias)
        return {"encoder_hidden_states": y.transpose(1, 2).unsqueeze(2)}
    raise SystemExit(f"no PyTorch reference for component `{component}`")


def projection_file(path):
    """The projection's safetensors file: the path itself, or the one file in that folder."""
    import pathlib

    p = pathlib.Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.safetensors"))
        if len(files) != 1:
            raise SystemExit(f"{p}: expected one .safetensors file, found {len(files)}")
        return str(files[0])
    return str(p)


def safety_checker(sc, clip_input, images, adjustment):
    """Apple's vectorised safety check (torch2coreml's forward_coreml) on diffusers'
    StableDiffusionSafetyChecker: flagged images zeroed, flags as float (B, 1, 1, 1)."""
    import torch
    import torch.nn.functional as F

    def cosine(a, b):
        return F.normalize(a) @ F.normalize(b).transpose(0, 1)

    embeds = sc.visual_projection(sc.vision_model(clip_input)[1])
    special = cosine(embeds, sc.special_care_embeds) - sc.special_care_embeds_weights + adjustment
    special_care = special.gt(0).float().sum(dim=1).gt(0).float()
    cos = cosine(embeds, sc.concept_embeds)
    scores = cos - sc.concept_embeds_weights + (special_care * 0.01).unsqueeze(1)
    flagged = scores.gt(0).float().sum(dim=1).gt(0)[:, None, None, None]
    mask, _ = torch.broadcast_tensors(flagged, images)
    filtered = images.clone()
    filtered[mask] = 0.0
    return {"filtered_images": filtered, "has_nsfw_concepts": flagged.float(),
            "concept_scores": scores}


def main():
    args = sys.argv[1:]
    if args == ["--probe"]:
        probe()
        return
    opts = {"--variant": None, "--controlnet": None, "--projection": None}
    hidden_embeds = "--hidden-embeds" in args
    args = [a for a in args if a != "--hidden-embeds"]
    for key in list(opts):
        if key in args:
            i = args.index(key)
            opts[key] = args[i + 1]
            del args[i:i + 2]
    if len(args) != 4:
        raise SystemExit(__doc__)
    component, model, inputs_path, outputs_path = args

    import torch
    from safetensors.torch import load_file, save_file

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    inputs = {k: v.float() for k, v in load_file(inputs_path).items()}
    outputs = run(component, model, inputs, opts["--variant"], opts["--controlnet"],
                  opts["--projection"], hidden_embeds)
    save_file({k: v.float().contiguous() for k, v in outputs.items()}, outputs_path)


if __name__ == "__main__":
    main()
