"""CPU peers for the full-size benchmark (benches/full_models.rs): PyTorch (the diffusers or
transformers network, fp16 weights run in fp32) or OpenVINO (the same network through
`openvino.convert_model`, saved once as IR in `<diffusers folder>-openvino/<network>.xml`,
compiled for the CPU in f32 or bf16). Runs one engine on one network with the inputs of a
safetensors file in Core ML layout (UNet: sample, timestep, encoder_hidden_states (B, C, 1, S);
VAE decoder: z; text encoder: input_ids as float32), writes its output under the Core ML name,
and prints one JSON line {"network", "engine", "ms": [...], "median_ms", "threads", "version",
"load_s", "first_ms", "peak_rss_step_mb"}: the peak resident set during the timed runs (the kernel's mark
reset after loading and the warm-up).

target/reference-venv/bin/python peer_full_models.py NETWORK ENGINE FOLDER IN.safetensors OUT.safetensors RUNS
NETWORK: unet | vae_decoder | text_encoder
ENGINE: torch | openvino-f32 | openvino-bf16
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

THREADS = int(os.environ.get("SD_PEER_THREADS", "2"))


def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Network(torch.nn.Module):
    """One network's fp16 weights from its diffusers subfolder, run in fp32. A subclass names
    its `source` (module, class), its compared `output`, how it reads the `inputs` and its
    `forward`."""

    source = None
    output = None

    def __init__(self, folder):
        super().__init__()
        module, name = self.source
        cls = getattr(__import__(module), name)
        self.net = cls.from_pretrained(folder, variant="fp16", torch_dtype=torch.float32).eval()


class Unet(Network):
    """The UNet as a function of (sample, timestep, encoder_hidden_states)."""

    output = "noise_pred"
    source = ("diffusers", "UNet2DConditionModel")

    @staticmethod
    def inputs(x):
        ehs = x["encoder_hidden_states"].float().squeeze(2).transpose(1, 2).contiguous()
        return (x["sample"].float(), x["timestep"].float(), ehs)

    def forward(self, x, t, e):
        return self.net(x, t, e, return_dict=False)[0]


class VaeDecoder(Network):
    """AutoencoderKL.decode (post_quant_conv and the decoder), as Apple's VAE decoder."""

    output = "image"
    source = ("diffusers", "AutoencoderKL")

    @staticmethod
    def inputs(x):
        return (x["z"].float(),)

    def forward(self, z):
        return self.net.decode(z, return_dict=False)[0]


class TextEncoder(Network):
    """CLIPTextModel's last hidden state (after the final layer norm)."""

    output = "last_hidden_state"
    source = ("transformers", "CLIPTextModel")

    @staticmethod
    def inputs(x):
        return (x["input_ids"].long(),)

    def forward(self, ids):
        return self.net(ids, return_dict=False)[0]


NETWORKS = {"unet": Unet, "vae_decoder": VaeDecoder, "text_encoder": TextEncoder}


def main():
    network, engine, folder, inputs, out_path, runs = sys.argv[1:7]
    runs = int(runs)
    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    cls = NETWORKS[network]
    feed = cls.inputs(load_file(inputs))
    root = Path(folder).resolve().parent
    xml = root.with_name(root.name + "-openvino") / f"{network}.xml"
    if engine == "convert-openvino":
        import openvino as ov

        model = ov.convert_model(cls(folder), example_input=feed)
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return
    start = time.perf_counter()
    if engine == "torch":
        net = cls(folder)
        run = lambda: net(*feed)  # noqa: E731
        version = torch.__version__
    elif engine.startswith("openvino-"):
        import openvino as ov

        if not xml.exists():
            # Converted once, in its own process, so that the conversion's memory is not ours.
            subprocess.run([sys.executable, __file__, network, "convert-openvino", folder, inputs, out_path, "0"], check=True)
            start = time.perf_counter()
        compiled = ov.Core().compile_model(
            str(xml),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": THREADS,
                "INFERENCE_PRECISION_HINT": engine.removeprefix("openvino-"),
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        arrays = [t.numpy() for t in feed]
        run = lambda: torch.from_numpy(compiled(arrays)[0].copy())  # noqa: E731
        version = ov.__version__
    else:
        sys.exit(f"unknown engine {engine}")
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    out = run()  # warm-up
    first_ms = (time.perf_counter() - start) * 1000.0
    reset_peak()
    times = []
    for _ in range(runs):
        s = time.perf_counter()
        out = run()
        times.append((time.perf_counter() - s) * 1000.0)
    step_peak = status_mb("VmHWM")
    save_file({cls.output: out.contiguous()}, out_path)
    print(json.dumps({
        "network": network,
        "engine": engine,
        "ms": times,
        "median_ms": statistics.median(times),
        "threads": THREADS,
        "version": version,
        "load_s": load_s,
        "first_ms": first_ms,
        "peak_rss_step_mb": step_peak,
    }))


if __name__ == "__main__":
    main()
