#!/usr/bin/env bash
# Sets up and runs every check: formatting, clippy, and the whole test suite (unit tests next
# to the code and the end-to-end tests in tests/, on real models and real stores).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "==> model parity (text, speech, pictures) on the portable paths: the pure-Rust GEMM (no BLAS)"
echo "    and no CPU-specific kernels (no AVX-512: general attention, no bf16)"
MOSAIC_BLAS=off MOSAIC_CPU=generic cargo test --test e2e -- --test-threads=2 models:: vision::
echo "==> a throwaway PostgreSQL for the catalog tests (scripts/postgres.sh)"
PG_DIR="$(mktemp -d /tmp/mosaic-pg.XXXXXX)"
trap 'scripts/postgres.sh stop "$PG_DIR" || true; rm -rf "$PG_DIR"' EXIT
DATABASE_URL="$(scripts/postgres.sh start "$PG_DIR" "${PG_PORT:-54329}")"
export DATABASE_URL MOSAIC_REQUIRE_POSTGRES=1
echo "==> cargo test"
cargo test --all-targets -- --test-threads=2
