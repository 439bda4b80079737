#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then lints and tests.
# Usage: bash tests/run.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds live outside the clone so repeated runs (and fresh clones on the same machine) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pkgmirror/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: $(cargo --version)"
rustup component list --installed 2>/dev/null | grep -qE '^(clippy|rustfmt)' || rustup component add clippy rustfmt

# Real Python clients drive the mirror in the tests; they live in a venv outside the clone.
step "python clients"
venv="${PKGMIRROR_TEST_VENV:-$HOME/.cache/pkgmirror/venv}"
if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv"
fi
export PKGMIRROR_TEST_PYTHON="$venv/bin/python"
"$PKGMIRROR_TEST_PYTHON" -m pip --version

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

# The benchmarks run once each in test mode (a smoke test of the code they time); the unit and
# integration tests run last so their summary closes the output.
step "benchmarks (smoke)"
cargo test --benches --locked

step "tests"
cargo test --lib --bins --tests --locked
