#!/bin/bash
# One GPU-machine call: `cargo xtask bench gpu` prepared CARRY (default target/bench-gpu) here;
# there, from the repository root: bash xtask/bench/gpu/run.sh CARRY [tiny|engine]
# (tiny: only the apple-tiny checks; engine: only the full-size runs of our engine, no PyTorch).
# Prints the apple-tiny PSNR table, the tiny pipeline against diffusers and the CPU, sd generate
# on cuda beside cpu, then full-size SD 1.5 (random weights made there) timings beside PyTorch.
set -u
REPO=$(pwd)
C=$(cd "${1:-target/bench-gpu}" && pwd)
G=$REPO/xtask/bench/gpu
SP=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$SP/cu13/lib:$SP/cudnn/lib:/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
export SD_CUDA_CACHE=/tmp/sd-cuda-cache SD_FIXTURES=/tmp/apple-tiny SD_REPO=$REPO
PY=/opt/torch/.venv/bin/python; [ -x $PY ] || PY=python3
step() { echo "== $1 ($(date +%T))"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cd "$C" && xz -dkf sd.xz && xz -dkf cuda_engine.xz && chmod +x sd cuda_engine || exit 1
[ -d /tmp/apple-tiny ] || tar -xJf apple-tiny.tar.xz -C /tmp
E=$C/cuda_engine
TOK=$REPO/fixtures/models/sd1-tiny/tokenizer
MODE=${2:-all}
if [ $MODE != engine ]; then
step "apple-tiny PSNR table (CUDA engine)"
timeout 180 $E engine_matches_references_on_apple_tiny --nocapture --test-threads 1 2>&1 | grep -E "^\||test result|panicked|Error"
step "tiny pipeline on the engine against diffusers and the CPU"
timeout 180 $E engine_pipeline_matches_diffusers_and_the_cpu --nocapture 2>&1 | grep -E "generated|dB|test result|panicked"
step "sd generate --device cuda beside --device cpu (apple-tiny, 20 steps)"
for D in cpu cuda; do
  rm -rf /tmp/gen-$D
  timeout 120 ./sd generate "a photo of an astronaut riding a horse on mars" --resource-path /tmp/apple-tiny/packages/split_einsum \
    --tokenizer $TOK --device $D --step-count 20 --seed 93 --output-path /tmp/gen-$D 2>&1 | tail -1
done
$PY $G/png_psnr.py $(ls /tmp/gen-cpu/*.png | head -1) $(ls /tmp/gen-cuda/*.png | head -1)
fi
[ $MODE = tiny ] && exit 0
step "full-size SD 1.5: random weights, converted"
$PY -m pip install -q --no-deps $C/diffusers-*.whl 2>&1 | tail -1
RUNS=10; [ $MODE = engine ] && RUNS=1
timeout 240 $PY $REPO/crates/sd-runtime/benches/cuda_unet_full.py $G/sd15_unet.json /tmp/full $RUNS 2>&1 | grep TORCH_FULL_UNET
timeout 120 $PY $G/make_full.py $REPO /tmp/full/sd15 2>&1 | tail -1
timeout 120 ./sd convert --model-version /tmp/full/sd15 --convert-unet --convert-vae-decoder --convert-text-encoder -o /tmp/full/pkg 2>&1 | grep -v "^\[" | tail -2
[ $MODE = engine ] || timeout 60 ./sd convert --model-version /tmp/full/sd15 --convert-unet --attention-implementation ORIGINAL -o /tmp/full/pkg-original 2>&1 | grep -v "^\[" | tail -2
time_pkg() {
  SD_TIMING_PACKAGE=$1 SD_TIMING_INPUTS=${2:-} SD_TIMING_RUNS=30 timeout 150 $E engine_timing --ignored --nocapture 2>&1 \
    | grep -v "^running\|^$\|^test \|^failures\|^successes"
}
step "UNet (SPLIT_EINSUM)"; time_pkg $(ls -d /tmp/full/pkg/*unet.mlpackage) /tmp/full/unet_step.safetensors
[ $MODE = engine ] || { step "UNet (ORIGINAL)"; time_pkg $(ls -d /tmp/full/pkg-original/*unet.mlpackage) /tmp/full/unet_step.safetensors | head -24; }
step "VAE decoder"; time_pkg $(ls -d /tmp/full/pkg/*vae_decoder.mlpackage) | head -24
step "text encoder"; time_pkg $(ls -d /tmp/full/pkg/*text_encoder.mlpackage) | head -24
step "20-step 512x512 image on the engine"
SD_GENERATE_FOLDER=/tmp/full/pkg SD_GENERATE_TOKENIZER=$TOK timeout 150 $E engine_generate_timing --ignored --nocapture 2>&1 | grep -E -A2 "^\{|panicked"
[ $MODE = engine ] && { step "done"; exit 0; }
step "PyTorch: UNet step eager and reduce-overhead"
[ -f $C/torch_gpu_anchor.py ] && timeout 200 $PY $C/torch_gpu_anchor.py reduce-overhead 2>&1 | grep "^{"
step "PyTorch: VAE decode eager and reduce-overhead"
timeout 200 $PY - <<'PYEOF' 2>&1 | grep "^{"
import json, statistics, torch
from diffusers import AutoencoderKL
torch.backends.cudnn.benchmark = True
vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=512, block_out_channels=(128, 256, 512, 512),
                    layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).to("cuda", torch.float16).eval()
z = torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.float16)
def bench(name, fn, warm=3, reps=20):
    for _ in range(warm): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    print(json.dumps(dict(name=name, median_ms=round(statistics.median(ts), 3))), flush=True)
with torch.inference_mode():
    torch.cuda.reset_peak_memory_stats()
    bench("vae_decode_eager", lambda: vae.decode(z).sample)
    print(json.dumps(dict(vae_peak_mem_gb_eager=round(torch.cuda.max_memory_allocated() / 1e9, 3))), flush=True)
    dec = torch.compile(vae.decode, mode="reduce-overhead", fullgraph=True)
    bench("vae_decode_reduce_overhead", lambda: dec(z).sample.clone())
PYEOF
step "done"
