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

# The steps below install every tool the tests run, and the tests find each through a
# PKGMIRROR_TEST_* variable. A bare `cargo test` skips a test whose tool is missing; here a
# missing tool fails the test instead, so nothing is skipped unseen (tests/it/support/tools.rs).
export PKGMIRROR_REQUIRE_TOOLS=1

# Real Python clients drive the mirror in the tests (tests/it/support/sandbox.rs); they live in a
# venv outside the clone, at exact versions, and are installed only when missing or at another
# version (twine publishes to hosted indexes). pdm[locked] pins pdm's own dependencies to the set
# its release was tested with. moto's standalone server is the S3-compatible bucket the S3 tests
# run against (tests/it/support/s3_server.rs). prometheus-client's OpenMetrics parser reads
# what /metrics sends Prometheus (tests/it/metrics.rs).
step "python clients"
venv="${PKGMIRROR_TEST_VENV:-$HOME/.cache/pkgmirror/venv}"
export PKGMIRROR_TEST_VENV="$venv"
clients=(pip==26.3 uv==0.13.9 poetry==2.5.1 "pdm[locked]==2.29.3" twine==6.2.0 "moto[server]==5.2.5"
    prometheus-client==0.26.0)
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
"$venv/bin/twine" --version
"$PKGMIRROR_TEST_PYTHON" -c 'import moto; print("moto", moto.__version__)'

# Other index servers stand upstream of the mirror (tests/it/index_servers.rs): pypiserver,
# devpi-server and proxpi at exact versions, in a venv of their own so their dependencies cannot
# move the clients' ones, installed only when missing or at another version. The tests find them
# through PKGMIRROR_TEST_SERVERS_BIN.
step "index servers"
servers_venv="${PKGMIRROR_TEST_SERVERS_VENV:-$HOME/.cache/pkgmirror/servers-venv}"
export PKGMIRROR_TEST_SERVERS_BIN="$servers_venv/bin"
servers=(pypiserver==2.4.2 devpi-server==6.20.3 proxpi==1.3.1)
servers_stamp="$servers_venv/.pkgmirror-servers"
servers_present() {
    local installed pin
    installed="$("$servers_venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null)" || return 1
    for pin in "${servers[@]}"; do
        grep -qixF "$pin" <<<"$installed" || { echo "$pin is not installed in $servers_venv" >&2; return 1; }
    done
}
if [ "$(cat "$servers_stamp" 2>/dev/null)" != "${servers[*]}" ] || ! servers_present 2>/dev/null; then
    rm -f "$servers_stamp"
    "$servers_venv/bin/python" -m pip --version >/dev/null 2>&1 || python3 -m venv --clear "$servers_venv"
    "$servers_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${servers[@]}"
    servers_present
    echo "${servers[*]}" >"$servers_stamp"
fi
echo "pypiserver $("$PKGMIRROR_TEST_SERVERS_BIN/pypi-server" --version)"
echo "devpi-server $("$PKGMIRROR_TEST_SERVERS_BIN/devpi-server" --version)"
"$servers_venv/bin/python" -c 'from importlib.metadata import version; print("proxpi", version("proxpi"))'

# The web UI is driven in a real browser (tests/it/browser.rs runs tests/browser/ui_flow.mjs):
# Debian's Chromium, and playwright-core at the exact version pinned in tests/browser/package.json
# and package-lock.json, installed outside the clone and only when missing or changed.
step "browser"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    # Refresh the package lists only when they lack the package, or when installing from them
    # fails (a stale list may name a version the archive no longer has).
    if ! apt-cache policy "$@" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update -qq
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ||
        { as_root apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; }
}
# unpack_deb PACKAGE DIR: Debian's PACKAGE unpacked into DIR, not installed (no dependencies, no
# service started). Unpacked beside, then moved into place: an interrupted run leaves nothing
# half-written.
unpack_deb() {
    local deb
    deb="$(mktemp -d)"
    # The package lists may be stale or missing the package; refresh them once, as above.
    (cd "$deb" && apt-get download "$1") ||
        { as_root apt-get update -qq && (cd "$deb" && apt-get download "$1"); }
    dpkg -x "$deb/$1"_*.deb "$deb/root"
    rm -rf "$2"
    mkdir -p "$(dirname "$2")"
    mv "$deb/root" "$2"
    rm -rf "$deb"
}
[ -x /usr/bin/chromium ] || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
browser_dir="${PKGMIRROR_TEST_BROWSER_DIR:-$HOME/.cache/pkgmirror/browser}"
export PKGMIRROR_TEST_NODE_MODULES="$browser_dir/node_modules"
browser_stamp="$browser_dir/.pkgmirror-browser"
browser_pins="$(cat tests/browser/package.json tests/browser/package-lock.json | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$browser_stamp" 2>/dev/null)" != "$browser_pins" ] ||
    [ ! -f "$PKGMIRROR_TEST_NODE_MODULES/playwright-core/package.json" ]; then
    rm -f "$browser_stamp"
    mkdir -p "$browser_dir"
    cp tests/browser/package.json tests/browser/package-lock.json "$browser_dir/"
    npm ci --prefix "$browser_dir" --no-audit --no-fund --loglevel=error
    echo "$browser_pins" >"$browser_stamp"
fi
/usr/bin/chromium --version
echo "node $(node --version)"
node -e 'console.log("playwright-core", require(process.argv[1]).version)' \
    "$PKGMIRROR_TEST_NODE_MODULES/playwright-core/package.json"

# rebar3 resolves and compiles hex packages through the mirror (tests/it/hex_client.rs): a minimal
# Erlang from Debian, and Debian's rebar3 escript unpacked outside the clone (installing the rebar3
# package itself would pull in a GUI toolkit through its dependencies), each only when missing.
step "rebar3"
erlang=(erlang-base erlang-crypto erlang-public-key erlang-ssl erlang-inets erlang-asn1
    erlang-syntax-tools erlang-tools erlang-parsetools erlang-eunit)
erlang_installed="$(dpkg-query -W -f='${db:Status-Status}\n' "${erlang[@]}" 2>/dev/null | grep -cx installed || true)"
[ "$erlang_installed" -eq "${#erlang[@]}" ] || apt_install "${erlang[@]}"
rebar3_dir="${PKGMIRROR_TEST_REBAR3_DIR:-$HOME/.cache/pkgmirror/rebar3}"
export PKGMIRROR_TEST_REBAR3="$rebar3_dir/usr/bin/rebar3"
[ -x "$PKGMIRROR_TEST_REBAR3" ] || unpack_deb rebar3 "$rebar3_dir"
"$PKGMIRROR_TEST_REBAR3" version

# promtool checks what /metrics serves (tests/it/metrics.rs): Debian's prometheus package
# unpacked outside the clone (installing it would start a Prometheus server), only when missing.
step "promtool"
prometheus_dir="${PKGMIRROR_TEST_PROMETHEUS_DIR:-$HOME/.cache/pkgmirror/prometheus}"
export PKGMIRROR_TEST_PROMTOOL="$prometheus_dir/usr/bin/promtool"
[ -x "$PKGMIRROR_TEST_PROMTOOL" ] || unpack_deb prometheus "$prometheus_dir"
"$PKGMIRROR_TEST_PROMTOOL" --version | head -1

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

# The benchmarks run once each in test mode (a smoke test of the code they time); the unit and
# integration tests run last so their summary closes the output.
step "benchmarks (smoke)"
cargo test --bench '*' --locked

# The live stage (tests/it/live.rs): pkgmirror in front of the real public Python index, whose URL
# is read here from pip and never written in the repository. Bounded to a dozen pages and the
# files of a few installs; PKGMIRROR_LIVE=0 skips it.
step "live: the public index"
if [ "${PKGMIRROR_LIVE:-1}" = "0" ]; then
    echo "live stage skipped (PKGMIRROR_LIVE=0)"
else
    PKGMIRROR_LIVE_INDEX="$("$PKGMIRROR_TEST_PYTHON" -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')"
    export PKGMIRROR_LIVE_INDEX
    cargo test --test it --locked -- --ignored live::
fi

step "tests"
cargo test --lib --bins --tests --locked
