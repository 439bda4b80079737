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
for component in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# Real Python clients drive the mirror in the tests (tests/it/clients.rs); they live in a venv
# outside the clone, at exact versions, and are installed only when missing or at another version.
# pdm[locked] pins pdm's own dependencies to the set its release was tested with. moto's standalone
# server is the S3-compatible bucket the S3 tests run against (tests/it/s3_server.rs).
step "python clients"
venv="${PKGMIRROR_TEST_VENV:-$HOME/.cache/pkgmirror/venv}"
export PKGMIRROR_TEST_VENV="$venv"
clients=(pip==26.3 uv==0.13.9 poetry==2.5.1 "pdm[locked]==2.29.3" "moto[server]==5.2.5")
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    python3 -m venv --clear "$venv"
fi
export PKGMIRROR_TEST_PYTHON="$venv/bin/python"
# The stamp says a complete install of exactly these pins finished (pdm's locked dependencies
# included, which the version check alone cannot see).
stamp="$venv/.pkgmirror-clients"
pinned_versions_present() {
    "$PKGMIRROR_TEST_PYTHON" - "${clients[@]}" <<'PY'
import re, sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, _, wanted = spec.partition("==")
    try:
        found = version(re.sub(r"\[.*\]", "", name))
    except PackageNotFoundError:
        found = None
    if found != wanted:
        sys.exit(f"{name}: {found or 'not installed'}, wanted {wanted}")
PY
}
if [ "$(cat "$stamp" 2>/dev/null)" != "${clients[*]}" ] || ! pinned_versions_present 2>/dev/null; then
    rm -f "$stamp"
    "$PKGMIRROR_TEST_PYTHON" -m pip install --quiet --disable-pip-version-check "${clients[0]}"
    "$PKGMIRROR_TEST_PYTHON" -m pip install --quiet --disable-pip-version-check "${clients[@]:1}"
    pinned_versions_present
    echo "${clients[*]}" >"$stamp"
fi
"$PKGMIRROR_TEST_PYTHON" -m pip --version
"$venv/bin/uv" --version
"$venv/bin/poetry" --version
"$venv/bin/pdm" --version
"$PKGMIRROR_TEST_PYTHON" -c 'import moto; print("moto", moto.__version__)'

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

# The benchmarks run once each in test mode (a smoke test of the code they time); the unit and
# integration tests run last so their summary closes the output.
step "benchmarks (smoke)"
cargo test --bench '*' --locked

step "tests"
cargo test --lib --bins --tests --locked
