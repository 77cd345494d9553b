"""CLIP BPE tokenizer data: fixtures/tokenizer/{vocab.json, merges.txt, prompts.json}.

vocab.json / merges.txt are rebuilt from `bpe_simple_vocab_16e6.txt.gz` as shipped in the PyPI
wheel of open-clip-torch 3.3.0 (MIT licence), fetched with `pip download --no-deps` into
target/reference-cache/ (no other open-clip dependency is installed). They must equal the
tokenizer files of fixtures/models/sd1-tiny (the apple-tiny model) byte for byte.

prompts.json: 300+ prompts with the ids transformers' CLIPTokenizer gives, padded/truncated to
77 the SD1 way (pad <|endoftext|> = 49407) and the SD2 way (pad "!" = 0), plus the untruncated ids.

Run: python gen_tokenizer.py --out fixtures
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from common import REPO, log, parse_args, sha256

OPEN_CLIP = "open-clip-torch==3.3.0"
WHEEL = "open_clip_torch-3.3.0-py3-none-any.whl"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def bpe_gz(cache: Path) -> bytes:
    """The BPE file from the open-clip-torch wheel, downloaded once (no dependencies)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.exists():
        log(f"pip download --no-deps {OPEN_CLIP}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--disable-pip-version-check", OPEN_CLIP, "-d", str(cache)], check=True)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(BPE_MEMBER)
    out = cache / "bpe_simple_vocab_16e6.txt.gz"
    out.write_bytes(data)
    if sha256(out) != BPE_SHA256:
        raise SystemExit(f"{BPE_MEMBER} in {WHEEL}: unexpected sha256")
    return data


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab(gz: bytes) -> tuple[str, str]:
    """vocab.json and merges.txt text exactly as the Hugging Face CLIP repositories have them."""
    lines = gzip.decompress(gz).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(merges) == 48894
    encoder = {tok: i for i, tok in enumerate(vocab)}
    vocab_text = json.dumps(encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    merges_text = "#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges)
    return vocab_text, merges_text


def prompts() -> list[str]:
    special = [
        "",
        " ",
        "   ",
        "\t",
        "\n",
        "A photo of an astronaut riding a horse on Mars",
        "a photo of an astronaut riding a horse on mars",
        "A PHOTO OF AN ASTRONAUT RIDING A HORSE ON MARS",
        "  leading and trailing spaces  ",
        "runs   of    spaces",
        "tabs\tand\nnewlines\r\nmixed",
        "non\u00a0breaking\u00a0space",
        "ideographic\u3000space",
        "zero\u200bwidth\u200bspace",
        "em\u2003space and thin\u2009space",
        "hello, world!",
        "Hello... world?!",
        "!!!",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "???",
        "a,b,c,d",
        "(masterpiece:1.2), (best quality), [ugly]",
        "((((highly detailed))))",
        "photo | painting | sketch",
        "a/b\\c",
        "quote \"double\" and 'single'",
        "it's a dog's life, isn't it? we're, they've, I'm, we'll, he'd",
        "IT'S DON'T WE'RE",
        "'s 't 're 've 'm 'll 'd",
        "rock'n'roll",
        "e-mail@example.com",
        "https://example.com/path?query=1&x=2",
        "#hashtag @mention $100 %50 ^caret &and *star",
        "<html> &amp; &lt;tag&gt; &quot;",
        "~tilde `backtick` _under_score_ +plus= {brace}",
        "0",
        "1234567890",
        "3.14159265358979",
        "1,000,000",
        "4294967295",
        "2^32-1",
        "-42 +42 4e10 0x1F",
        "1st 2nd 3rd 4th 21st",
        "1920x1080 8k uhd 4K",
        "café crème brûlée",
        "naïve façade coöperate",
        "Ångström Ærøskøbing Œuvre",
        "ñandú jalapeño piñata",
        "Straße über Größe",
        "cafe\u0301 (combining acute)",
        "A\u030angstro\u0308m",
        "İstanbul ıi",
        "Ελληνικά γράμματα",
        "Привет, мир",
        "שלום עולם",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "สวัสดีชาวโลก",
        "東京タワーの夜景",
        "一只可爱的猫坐在窗台上",
        "고양이가 창가에 앉아 있다",
        "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
        "🐱",
        "🐱🚀🌕",
        "a cat 🐱 in space 🚀",
        "👩‍🚀 astronaut",
        "👍🏽 thumbs",
        "🇫🇷🇯🇵 flags",
        "❤️ love ♥ ☺",
        "★☆✦ stars ✨",
        "math: ∑ ∫ √ ∞ ≠ ≤ π",
        "arrows → ← ↑ ↓",
        "© ® ™ § ¶ † ‡",
        "°C ±5 µm ½ ¼",
        "€100 £50 ¥1000",
        "<|startoftext|>",
        "<|endoftext|>",
        "a <|endoftext|> b",
        "</w>",
        "a\u0000b",
        "x" * 100,
        "supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "abc123def456",
        "CamelCaseWordsTogether",
        "snake_case_words_together",
        "kebab-case-words-together",
        "a.b.c.d.e",
        "...",
        "—em dash– en dash",
        "“curly quotes” ‘single’",
        "«guillemets» „low“",
        "¿Dónde está? ¡Aquí!",
        "l'été à Paris",
        "A" + " very" * 80 + " long prompt",
        ", ".join(["masterpiece", "best quality", "ultra detailed", "8k", "photorealistic",
                   "cinematic lighting", "volumetric fog", "sharp focus", "intricate",
                   "elegant", "highly detailed", "digital painting", "artstation",
                   "concept art", "smooth", "illustration", "art by greg rutkowski",
                   "and alphonse mucha", "trending on artstation", "octane render",
                   "unreal engine 5", "depth of field", "bokeh", "golden hour", "wide angle",
                   "award winning photograph", "national geographic"]),
        " ".join(str(i) for i in range(60)),
        "🐱" * 40,
        "東京" * 60,
        "word " * 74 + "end",
        "word " * 75 + "end",
        "word " * 76 + "end",
    ]
    subjects = ["a cat", "an old man", "a red car", "a castle", "a bowl of fruit", "a robot",
                "a mountain lake", "two dogs", "a city street", "a spaceship", "a portrait",
                "a forest path", "a lighthouse", "a teapot", "a dragon", "a bicycle",
                "a sunflower field", "a snowy village", "an owl", "a coffee cup"]
    styles = ["photograph", "oil painting", "watercolor, soft colors", "3D render, octane",
              "pencil sketch", "in the style of Van Gogh", "anime style!", "at night, 35mm",
              "low-poly", "pixel art (16-bit)"]
    combos = []
    for s in subjects:
        for st in styles:
            combos.append(f"{s}, {st}")
    for i, s in enumerate(subjects):
        combos.append(f"{i * 37 % 1000} x {s.upper()} #{i}")
    out = special + combos
    assert len(out) >= 300, len(out)
    return out


def tokenize_all(tok_dir_sd1: Path, tok_dir_sd2: Path, texts: list[str]) -> list[dict]:
    from transformers import CLIPTokenizer

    t1 = CLIPTokenizer.from_pretrained(str(tok_dir_sd1))
    t2 = CLIPTokenizer.from_pretrained(str(tok_dir_sd2))
    assert t1.pad_token_id == 49407 and t2.pad_token_id == 0, (t1.pad_token_id, t2.pad_token_id)
    rows = []
    for i, text in enumerate(texts):
        full = t1(text).input_ids
        sd1 = t1(text, padding="max_length", max_length=77, truncation=True).input_ids
        sd2 = t2(text, padding="max_length", max_length=77, truncation=True).input_ids
        assert len(sd1) == 77 and len(sd2) == 77
        rows.append({"index": i, "text": text, "ids": full, "sd1": sd1, "sd2": sd2})
    return rows


def write_prompts(path: Path, rows: list[dict], meta: dict) -> None:
    """One prompt per line (compact), keys sorted: small and diff-friendly."""
    body = ",\n".join("    " + json.dumps(r, sort_keys=True, ensure_ascii=False,
                                            separators=(",", ":")) for r in rows)
    head = json.dumps(meta, sort_keys=True, ensure_ascii=False, indent=2)[:-2]
    path.write_text(head + ',\n  "prompts": [\n' + body + "\n  ]\n}\n", encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))  # well-formed


def write_vocab(out: Path) -> None:
    """fixtures/tokenizer/{vocab.json, merges.txt}, checked against the apple-tiny files."""
    out.mkdir(parents=True, exist_ok=True)
    gz = bpe_gz(REPO / "target" / "reference-cache")
    vocab_text, merges_text = build_vocab(gz)
    for name, text in (("vocab.json", vocab_text), ("merges.txt", merges_text)):
        data = text.encode("utf-8")
        if sha256_bytes(data) != APPLE_TINY_SHA256[name]:
            raise SystemExit(f"{name} rebuilt from open-clip differs from apple-tiny's")
        (out / name).write_bytes(data)


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


APPLE_TINY_SHA256 = {
    "vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    out = args.out / "tokenizer"
    write_vocab(out)
    import transformers

    rows = tokenize_all(args.out / "models/sd1-tiny/tokenizer",
                        args.out / "models/sd2-tiny/tokenizer", prompts())
    meta = {
        "source": "transformers.CLIPTokenizer " + transformers.__version__
                  + " on models/sd1-tiny/tokenizer (sd1, ids) and models/sd2-tiny/tokenizer (sd2)",
        "ids": "untruncated, unpadded: <|startoftext|> ... <|endoftext|>",
        "sd1": "padding='max_length', max_length=77, truncation=True; pad <|endoftext|> = 49407",
        "sd2": "padding='max_length', max_length=77, truncation=True; pad '!' = 0",
        "bos": 49406,
        "eos": 49407,
    }
    write_prompts(out / "prompts.json", rows, meta)
    log(f"tokenizer: vocab.json, merges.txt, prompts.json ({len(rows)} prompts)")


if __name__ == "__main__":
    main()
