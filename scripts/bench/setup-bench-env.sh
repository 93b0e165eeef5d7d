#!/usr/bin/env bash
# The benchmark's comparison environment: the *current* releases of PyTorch,
# sentence-transformers and faster-whisper (CTranslate2), resolved by pip at setup time (unlike
# scripts/setup-reference-env.sh, whose pins keep the parity fixtures reproducible). Rerun it to
# measure against newer releases; scripts/bench/run.sh prints the versions it ran.
#   scripts/bench/setup-bench-env.sh            # venv at ~/.cache/mosaic/pybench
#   MOSAIC_PYBENCH=/some/dir scripts/bench/setup-bench-env.sh
# PyPI's torch wheel is the CUDA build (it pulls NVIDIA's runtime libraries, a few GB); it runs
# on the CPU here.
set -euo pipefail
venv="${MOSAIC_PYBENCH:-$HOME/.cache/mosaic/pybench}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade \
    torch sentence-transformers faster-whisper
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
print("bench env: " + ", ".join(f"{p} {md.version(p)}" for p in
      ["torch", "sentence-transformers", "transformers", "faster-whisper", "ctranslate2"]))
PY
echo "bench env: python is $venv/bin/python"
