"""CLIP image preprocessing for the safety checker: fixtures/preprocess/clip.safetensors.

What diffusers' StableDiffusionPipeline feeds its safety checker as `clip_input`:
`feature_extractor(numpy_to_pil(image), return_tensors="np").pixel_values`, where the feature
extractor is transformers' `CLIPImageProcessor` loaded from a `feature_extractor/` folder. In
transformers 5, `CLIPImageProcessor` is the torchvision backend; without torchvision installed (the
reference venv has none) transformers falls back to `CLIPImageProcessorPil`: Pillow's resize (here
BICUBIC, uint8 fixed point), a numpy center crop, rescale (float64 product cast to float32) and
normalize (float32). This script uses `CLIPImageProcessorPil` by name, so the result does not depend
on whether torchvision happens to be installed.

Two configurations:
- `tiny`: fixtures/models/safety-checker-tiny/feature_extractor (shortest edge 64, crop 64x64);
- `sd`: the preprocessor_config.json of the SD 1.x checkpoints (CompVis/runwayml folders, the old
  `CLIPFeatureExtractor` form: `"size": 224`, `"crop_size": 224`, OpenAI CLIP mean/std, BICUBIC).

Synthetic uint8 RGB images (gradients, a sharp 0/255 checkerboard and uniform noise, so every
resampling lobe and the clipping to 0..255 are exercised), width x height:
240x228 (downscaled by both configs), 150x100, 97x131, 48x40 (smaller than both targets:
upsampling), 31x250 (thin, odd).

Tensors (names sorted in the file):
- `input.<W>x<H>`: uint8 (H, W, 3), the image;
- `tiny.<W>x<H>`: float32 (1, 3, 64, 64), pixel_values with the tiny config;
- `sd.<W>x<H>.head`, `sd.<W>x<H>.tail`: float32 (16,), the first and last 16 values of the
  pixel_values (1, 3, 224, 224) with the SD config; the whole array is recorded as the FNV-1a-64
  hash of its little-endian float32 bytes in the metadata (`sd.<W>x<H>.fnv1a64`), as
  gen_noise.py does for large arrays (the full arrays, 602 KB each, would not fit the fixtures'
  size budget);
- `luma.97x131`: uint8 (131, 97), `Image.convert("L")` of that image (the grayscale rule diffusers'
  inpainting mask processor applies, ITU-R 601-2 luma in Pillow's 16-bit fixed point).
Metadata: the configs as JSON (`config.tiny`, `config.sd`), the hashes, the processor class used
and the Pillow, transformers and numpy versions.

Run: python gen_preprocess.py --out fixtures
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from common import fresh_dir, log, parse_args, save_tensors  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

SIZES = [(240, 228), (150, 100), (97, 131), (48, 40), (31, 250)]  # (width, height)
LUMA_SIZE = (97, 131)

# The feature_extractor/preprocessor_config.json of the SD 1.x checkpoints.
SD_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def synthetic(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 (H, W, 3): horizontal/vertical gradients, a 7-pixel 0/255 checkerboard, noise in the
    top-left quarter and a solid white and a solid black bar (flat areas where overshoot clips)."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    r = (xx * 255) // max(width - 1, 1)
    g = (yy * 255) // max(height - 1, 1)
    b = ((xx // 7 + yy // 7) % 2) * 255
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    noise = rs.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
    q = (yy < height // 2) & (xx < width // 2)
    img[q] = noise[q]
    img[(height * 3) // 4:, : width // 3] = 255
    img[(height * 3) // 4:, width // 3: (2 * width) // 3] = 0
    return img


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import transformers
    from transformers import CLIPImageProcessorPil

    out = fresh_dir(args.out / "preprocess")
    tiny_dir = args.out / "models" / "safety-checker-tiny" / "feature_extractor"
    tiny = CLIPImageProcessorPil.from_pretrained(str(tiny_dir))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "preprocessor_config.json").write_text(json.dumps(SD_CONFIG, indent=2))
        sd = CLIPImageProcessorPil.from_pretrained(tmp)
    assert sd.size == {"shortest_edge": 224} or dict(sd.size) == {"shortest_edge": 224}, sd.size

    tensors = {}
    hashes = {}
    for i, (w, h) in enumerate(SIZES):
        img = synthetic(w, h, 9000 + i)
        name = f"{w}x{h}"
        tensors[f"input.{name}"] = img
        pil = Image.fromarray(img, mode="RGB")
        tensors[f"tiny.{name}"] = tiny(pil, return_tensors="np").pixel_values.astype(np.float32)
        assert tensors[f"tiny.{name}"].shape == (1, 3, 64, 64)
        pv = sd(pil, return_tensors="np").pixel_values.astype(np.float32)
        assert pv.shape == (1, 3, 224, 224)
        flat = pv.reshape(-1)
        tensors[f"sd.{name}.head"] = flat[:16].copy()
        tensors[f"sd.{name}.tail"] = flat[-16:].copy()
        hashes[f"sd.{name}.fnv1a64"] = fnv1a64(flat.astype("<f4").tobytes())
        if (w, h) == LUMA_SIZE:
            tensors[f"luma.{name}"] = np.array(pil.convert("L"))

    tiny_config = json.loads((tiny_dir / "preprocessor_config.json").read_text())
    meta = {
        "what": "transformers CLIPImageProcessorPil(images, return_tensors='np').pixel_values "
                "for the safety checker's clip_input; luma.* = PIL Image.convert('L')",
        "processor": type(tiny).__name__,
        "config.tiny": json.dumps(tiny_config, sort_keys=True),
        "config.sd": json.dumps(SD_CONFIG, sort_keys=True),
        "pillow": PIL.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        **hashes,
    }
    path = out / "clip.safetensors"
    save_tensors(path, tensors, meta)
    log(f"wrote {path} ({path.stat().st_size} bytes, Pillow {PIL.__version__})")


if __name__ == "__main__":
    main()
