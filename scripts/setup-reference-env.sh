#!/usr/bin/env bash
# Creates (or brings up to date) the pinned Python reference environment used by
# scripts/make_parity_fixtures.py and scripts/make_minilm_reference.py. Idempotent: a second
# run with the same requirements file does nothing but a quick import check.
#
#   scripts/setup-reference-env.sh            # venv at ~/.cache/mosaic/pyref
#   MOSAIC_PYREF=/some/dir scripts/setup-reference-env.sh
#   PYTHON=python3.11 scripts/setup-reference-env.sh
#
# Needs Python 3.11 on x86_64 Linux and PyPI (about 3 GB of wheels: PyPI's torch is the CUDA
# build and only imports with the nvidia-* libraries installed, even on a CPU-only machine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements-reference.txt"
venv="${MOSAIC_PYREF:-$HOME/.cache/mosaic/pyref}"
python="${PYTHON:-python3}"

ver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$ver" != "3.11" ]; then
    echo "setup-reference-env: need Python 3.11 (the pins are for it), $python is $ver; set PYTHON=" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-reference-env: creating $venv"
    "$python" -m venv "$venv"
fi

stamp="$venv/.mosaic-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup-reference-env: installing pinned packages into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps -r "$req"
    "$venv/bin/python" -m pip check
    echo "$want" > "$stamp"
fi

"$venv/bin/python" - <<'PY'
import torch, transformers, sentence_transformers, tokenizers, safetensors, sentencepiece
assert torch.__version__.startswith("2.5.1"), torch.__version__
x = torch.ones(2, 2) @ torch.ones(2, 2)
assert float(x.sum()) == 8.0
print("reference env ok: torch %s (cuda available: %s), transformers %s, sentence-transformers %s, "
      "tokenizers %s, safetensors %s" % (torch.__version__, torch.cuda.is_available(),
      transformers.__version__, sentence_transformers.__version__, tokenizers.__version__,
      safetensors.__version__))
PY
echo "setup-reference-env: python is $venv/bin/python"
