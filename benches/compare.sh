#!/usr/bin/env bash
# pkgmirror side by side with nginx serving the same bytes, on this machine, in one run.
#
# Usage: benches/compare.sh [path/to/pkgmirror]     (default: the release build; built if missing)
#   DURATION=5s CONNECTIONS=32 THREADS=2 benches/compare.sh
#
# Installs nginx and wrk with apt when they are missing. Everything listens on 127.0.0.1 and stops
# by itself. A fake upstream (python) serves the real pages of tests/fixtures/real (their file
# host rewritten to it) and synthetic files; pkgmirror mirrors it; every warm row's bytes are then
# captured from pkgmirror and handed to nginx (sendfile on), so both serve exactly the same bytes.
# docs/PERFORMANCE.md explains the rows and holds the last table.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
duration="${DURATION:-5s}"
connections="${CONNECTIONS:-32}"
threads="${THREADS:-2}"
# The cold rows' upstream delivers files at this many bytes a second: the issue that asked for
# these rows measured the public index at about 300 MB/s from this machine.
paced_rate="${PACED_RATE:-300000000}"

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 with apt" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need wrk wrk
[ -x /usr/sbin/nginx ] || need nginx nginx
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

target="${CARGO_TARGET_DIR:-$HOME/.cache/pkgmirror/target}"
binary="${1:-$target/release/pkgmirror}"
if [ ! -x "$binary" ]; then
    CARGO_TARGET_DIR="$target" cargo build --release --bin pkgmirror
fi

work="$(mktemp -d)"
chmod 755 "$work" # nginx's workers run as another user when started as root
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
    for _ in $(seq 200); do curl -fs -o /dev/null "$1" && return; sleep 0.05; done
    echo "nothing answers at $1" >&2; exit 1
}

# ---------------------------------------------------------------------------------------------
# The fake upstream: real pages, synthetic files, optional latency per request.
upstream_port=$(port)
slow_port=$(port)
cat >"$work/upstream.py" <<'PY'
import hashlib, http.server, os, socketserver, sys, time
root, port, delay, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
big = len(sys.argv) > 5  # also serve the 1 GiB file (made up as it is sent, never held)
base = f"http://127.0.0.1:{port}"
real = os.path.join(root, "tests/fixtures/real")
files = {}  # path -> bytes
def synth(name, size):
    data = (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[:size]
    files[f"/packages/synthetic/{name}"] = data
    return name, hashlib.sha256(data).hexdigest()
synthetic = [synth("bench-1.0.0-py3-none-any.whl", 1 << 20),
             synth("bench-2.0.0-py3-none-any.whl", 16 << 20),
             synth("bench-3.0.0.tar.gz", 50 << 20)]
streamed = {}  # path -> (size, block): the block repeated makes the file
if big:
    block, size = hashlib.sha256(b"big").digest() * (1 << 15), 1 << 30  # 1 MiB, 1 GiB
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)
    streamed["/packages/synthetic/bench-4.0.0.tar.gz"] = (size, block)
    synthetic.append(("bench-4.0.0.tar.gz", digest.hexdigest()))
pages = {}
for name in os.listdir(real):
    stem, ext = os.path.splitext(name)
    if ext in (".html", ".json"):
        with open(os.path.join(real, name)) as f:
            pages[(stem, ext)] = f.read().replace("https://files.example/", base + "/").encode()
links = "".join(f'<a href="{base}/packages/synthetic/{n}#sha256={h}">{n}</a>\n' for n, h in synthetic)
pages[("bench", ".html")] = ('<!DOCTYPE html><html><head><meta name="pypi:repository-version" '
                             f'content="1.0"></head><body>\n{links}</body></html>\n').encode()
for top, _, names in os.walk(os.path.join(real, "files")):
    for n in names:
        path = os.path.join(top, n)
        with open(path, "rb") as f:
            files["/" + os.path.relpath(path, os.path.join(real, "files"))] = f.read()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if delay: time.sleep(delay)
        path = self.path.split("?")[0]
        if path.startswith("/simple/"):
            name = path[len("/simple/"):].strip("/")
            json_wanted = "json" in self.headers.get("Accept", "")
            body = None
            if name.startswith(("cold-", "direct-")):
                body = (f'<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
                        f'</head><body><a href="{base}/packages/synthetic/{name}-1.0.tar.gz#sha256={"0"*64}">'
                        f'{name}-1.0.tar.gz</a></body></html>').encode()
                ctype = "text/html"
            elif json_wanted and (name, ".json") in pages:
                body, ctype = pages[(name, ".json")], "application/vnd.pypi.simple.v1+json"
            elif (name, ".html") in pages:
                body, ctype = pages[(name, ".html")], "text/html"
            if body is None:
                return self.answer(404, b"not found", "text/plain")
            return self.answer(200, body, ctype)
        if path in files:
            return self.answer(200, files[path], "application/octet-stream")
        if path in streamed:
            size, block = streamed[path]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for _ in range(size // len(block)):
                self.wfile.write(block)
            return
        self.answer(404, b"not found", "text/plain")
    def answer(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not rate:
            return self.wfile.write(body)
        start, step = time.monotonic(), 1 << 20  # paced: `rate` bytes a second, in 1 MB writes
        for at in range(0, len(body), step):
            self.wfile.write(body[at:at + step])
            ahead = start + (at + step) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512
Server(("127.0.0.1", port), Handler).serve_forever()
PY
paced_port=$(port)
python3 "$work/upstream.py" "$root" "$upstream_port" 0 0 big & pids+=($!)
python3 "$work/upstream.py" "$root" "$slow_port" 0.1 0 & pids+=($!)
python3 "$work/upstream.py" "$root" "$paced_port" 0 "$paced_rate" & pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/simple/six/"
wait_for "http://127.0.0.1:$slow_port/simple/six/"
wait_for "http://127.0.0.1:$paced_port/simple/six/"

# burst URL PREFIX N: N requests at once from one process (threads, connections opened first),
# for pages PREFIX000/ ... ; prints "answered p50_s p99_s".
cat >"$work/burst.py" <<'PY'
import http.client, sys, threading, time, urllib.parse
base, prefix, n = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2], int(sys.argv[3])
times, go = [None] * n, threading.Event()
def one(i):
    c = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    c.connect()
    go.wait()
    start = time.monotonic()
    c.request("GET", f"{base.path}/simple/{prefix}{i:03d}/")
    r = c.getresponse()
    r.read()
    times[i] = time.monotonic() - start if r.status == 200 else None
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads: t.start()
time.sleep(0.5)
go.set()
for t in threads: t.join()
ok = sorted(t for t in times if t is not None)
print(len(ok), f"{ok[len(ok) // 2]:.3f}", f"{ok[max(0, int(len(ok) * 0.99) - 1)]:.3f}")
PY

# ---------------------------------------------------------------------------------------------
# start_mirror NAME UPSTREAM_PORT: starts a mirror of that upstream with its own data dir; sets
# $mirror (its pid) and $m (its URL).
start_mirror() {
    local mirror_port
    mirror_port=$(port)
    # wrk is one client at tens of thousands of requests a second: the per-client limits stay
    # on (their cost is measured) but far above it.
    PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS=true PKGMIRROR__LOG__LEVEL=warn \
        PKGMIRROR__LIMITS__REQUESTS_PER_SECOND=10000000 PKGMIRROR__LIMITS__BURST=10000000 \
        PKGMIRROR__LIMITS__DOWNLOADS_PER_CLIENT=100000 \
        "$binary" serve --listen "127.0.0.1:$mirror_port" --data-dir "$work/data-$1" \
        --pypi-upstream "http://127.0.0.1:$2/simple/" >"$work/mirror-$1.log" 2>&1 &
    mirror=$!
    pids+=("$mirror")
    m="http://127.0.0.1:$mirror_port"
    wait_for "$m/health"
}
start_mirror slow "$slow_port"
slow_mirror=$mirror
slow_m=$m
rss() { awk '$1 == "VmRSS:" {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm() { awk '$1 == "VmHWM:" {printf "%.0f", $2/1024}' "/proc/$1/status"; }

html='application/vnd.pypi.simple.v1+html'
json='application/vnd.pypi.simple.v1+json'
six_whl="six-1.17.0-py2.py3-none-any.whl"

# ---------------------------------------------------------------------------------------------
# Cold rows first (the caches are empty). Files come from the paced upstream, through a mirror of
# it; the 50 MB file also from the loopback upstream (as fast as this machine copies bytes).
start_mirror paced "$paced_port"
paced_mirror=$mirror
p="http://127.0.0.1:$paced_port"
curl -fs -o /dev/null "$m/simple/bench/"
timing() { curl -fs -o /dev/null -w '%{time_starttransfer} %{time_total}' "$1"; }
direct=$(timing "$p/packages/synthetic/bench-3.0.0.tar.gz")
first=$(timing "$m/simple/bench/bench-3.0.0.tar.gz")
# 20 clients on one cold file (the 16 MB wheel), against one download of it directly.
one=$(curl -fs -o /dev/null -w '%{time_total}' "$p/packages/synthetic/bench-2.0.0-py3-none-any.whl")
start=$(date +%s.%N)
clients=()
for _ in $(seq 20); do curl -fs -o /dev/null "$m/simple/bench/bench-2.0.0-py3-none-any.whl" & clients+=($!); done
wait "${clients[@]}"
twenty=$(python3 -c "import time; print(f'{time.time() - $start:.3f}')")
kill "$paced_mirror"

start_mirror main "$upstream_port"
u="http://127.0.0.1:$upstream_port"
curl -fs -o /dev/null "$m/simple/bench/"
loopback_direct=$(timing "$u/packages/synthetic/bench-3.0.0.tar.gz")
loopback_first=$(timing "$m/simple/bench/bench-3.0.0.tar.gz")

# 200 different cold pages at once through the mirror of the slow (100 ms) upstream, against the
# same burst sent to that upstream directly.
read -r cold_direct_ok cold_direct_p50 cold_direct_p99 <<<"$(python3 "$work/burst.py" "http://127.0.0.1:$slow_port" direct- 200)"
read -r cold_ok cold_p50 cold_p99 <<<"$(python3 "$work/burst.py" "$slow_m" cold- 200)"
kill "$slow_mirror"

# ---------------------------------------------------------------------------------------------
# Warm the mirror, then capture what it serves for each row into nginx's root.
mkdir -p "$work/nginx/root" "$work/nginx/tmp"
capture() { # row url accept encoding file
    curl -fs -o "$work/nginx/root/$1" -H "Accept: $3" ${4:+-H "Accept-Encoding: $4"} "$2"
}
for _ in 1 2; do # the first asks upstream, the second is a hit
    for p in six numpy; do
        curl -fs -o /dev/null -H "Accept: $html" "$m/simple/$p/"
        curl -fs -o /dev/null -H "Accept: $json" "$m/simple/$p/"
    done
    curl -fs -o /dev/null "$m/simple/six/$six_whl"
    curl -fs -o /dev/null "$m/simple/bench/bench-1.0.0-py3-none-any.whl"
    curl -fs -o /dev/null "$m/simple/bench/bench-2.0.0-py3-none-any.whl"
done
metadata_row=yes
curl -fs -o /dev/null "$m/simple/six/$six_whl.metadata" || metadata_row=""
capture six.html "$m/simple/six/" "$html" ""
capture six.json "$m/simple/six/" "$json" ""
capture numpy.json.zst "$m/simple/numpy/" "$json" "zstd"
capture numpy.json.gz "$m/simple/numpy/" "$json" "gzip"
capture numpy.html "$m/simple/numpy/" "$html" ""
[ -n "$metadata_row" ] && capture six.metadata "$m/simple/six/$six_whl.metadata" "*/*" ""
capture six.whl "$m/simple/six/$six_whl" "*/*" ""
capture 1m.whl "$m/simple/bench/bench-1.0.0-py3-none-any.whl" "*/*" ""
capture 16m.whl "$m/simple/bench/bench-2.0.0-py3-none-any.whl" "*/*" ""
etag=$(curl -fs -o /dev/null -D - -H "Accept: $html" "$m/simple/six/" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')

nginx_port=$(port)
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/nginx/root;
        location ~ \.html\$ { default_type text/html; }
        location ~ \.json\$ { default_type application/vnd.pypi.simple.v1+json; }
        location ~ \.gz\$ { default_type application/vnd.pypi.simple.v1+json; add_header Content-Encoding gzip; }
        location ~ \.zst\$ { default_type application/vnd.pypi.simple.v1+json; add_header Content-Encoding zstd; }
    }
}
NGINX
"$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>>"$work/nginx/error.log" ||
    { cat "$work/nginx/error.log" >&2; exit 1; }
n="http://127.0.0.1:$nginx_port"
wait_for "$n/six.html"
nginx_etag=$(curl -fs -o /dev/null -D - "$n/six.html" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')

# ---------------------------------------------------------------------------------------------
# wrk_row URL [conns] [header...]: prints "req/s p50_ms p99_ms"
wrk_row() {
    local url=$1 conns=$2; shift 2
    local args=()
    for h in "$@"; do args+=(-H "$h"); done
    local out
    out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency "${args[@]}" "$url")
    echo "$out" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ {rps=$2} /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)}
        /Non-2xx or 3xx/ {bad=$NF}
        END {printf "%.0f %.2f %.2f %s\n", rps, p50, p99, (bad ? bad : 0)}'
}
rows=()
row() { # name conns mirror-url nginx-url header...
    local name=$1 conns=$2 mu=$3 nu=$4; shift 4
    local mine theirs
    mine=$(wrk_row "$mu" "$conns" "$@")
    theirs=$(wrk_row "$nu" "$conns" "$@")
    rows+=("$name|$mine|$theirs")
}
row "small page, HTML (six)" "$connections" "$m/simple/six/" "$n/six.html" "Accept: $html"
row "small page, JSON (six)" "$connections" "$m/simple/six/" "$n/six.json" "Accept: $json"
row "numpy JSON as uv asks (zstd)" "$connections" "$m/simple/numpy/" "$n/numpy.json.zst" "Accept: $json" "Accept-Encoding: zstd, gzip"
row "numpy JSON as pip asks (gzip)" "$connections" "$m/simple/numpy/" "$n/numpy.json.gz" "Accept: $json" "Accept-Encoding: gzip"
row "numpy HTML, uncompressed" "$connections" "$m/simple/numpy/" "$n/numpy.html" "Accept: $html"
[ -n "$metadata_row" ] && row ".metadata file" "$connections" "$m/simple/six/$six_whl.metadata" "$n/six.metadata"
row "10 KB wheel (six)" "$connections" "$m/simple/six/$six_whl" "$n/six.whl"
row "1 MB file" "$connections" "$m/simple/bench/bench-1.0.0-py3-none-any.whl" "$n/1m.whl"
row "16 MB wheel (8 connections)" 8 "$m/simple/bench/bench-2.0.0-py3-none-any.whl" "$n/16m.whl"
# No HEAD row: Debian's wrk 4.1 reads a HEAD answer as a broken one (read errors, 0 requests),
# against nginx and python alike.
mine=$(wrk_row "$m/simple/six/" "$connections" "Accept: $html" "If-None-Match: $etag")
theirs=$(wrk_row "$n/six.html" "$connections" "If-None-Match: $nginx_etag")
rows+=("304 revalidation of a page|$mine|$theirs")
rss_after=$(rss "$mirror")
hwm_after=$(hwm "$mirror")

# ---------------------------------------------------------------------------------------------
# 1 GiB to 50 clients at once: first while the mirror downloads it (one upstream fetch, 50
# readers following it), then from the cache. The mirror's RSS is sampled while each runs.
big_url="$m/simple/bench/bench-4.0.0.tar.gz"
fifty() { # prints how many of the 50 got the whole file
    local i
    for i in $(seq 50); do curl -fs -o /dev/null -w '%{size_download}\n' "$big_url" >"$work/fifty-$i" & done
    wait
    cat "$work"/fifty-* | grep -cx "$((1 << 30))" || true
}
peak_while_fifty() { # prints "complete seconds peak_rss_mb"
    local start peak=0 r
    start=$(date +%s.%N)
    fifty >"$work/fifty-done.tmp" &
    local job=$!
    while kill -0 "$job" 2>/dev/null; do
        r=$(rss "$mirror")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.05
    done
    wait "$job"
    echo "$(cat "$work/fifty-done.tmp") $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") $peak"
}
read -r big_cold_ok big_cold_secs big_cold_peak <<<"$(peak_while_fifty)"
read -r big_warm_ok big_warm_secs big_warm_peak <<<"$(peak_while_fifty)"

# ---------------------------------------------------------------------------------------------
# What the metadata costs on disk: every page of the corpus in both formats, then the mirror
# stopped (it gives free pages back and folds its WAL in as it stops) and its files measured.
served=0
for page in "$root"/tests/fixtures/real/*.html; do
    page=$(basename "$page" .html)
    for accept in "$html" "$json"; do
        served=$((served + $(curl -fs -o /dev/null -w '%{size_download}' -H "Accept: $accept" "$m/simple/$page/")))
    done
done
kill -TERM "$mirror"
while kill -0 "$mirror" 2>/dev/null; do sleep 0.1; done
data="$work/data-main"
page_store=$(( $(stat -c %s "$data/pages.redb") + $(find "$data/page-bodies" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}') ))
catalogue=$(find "$data" -maxdepth 1 -name 'catalogue.sqlite3*' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
read -r projects files <<<"$(python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(*db.execute('SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM files)').fetchone())" "$data/catalogue.sqlite3")"

# ---------------------------------------------------------------------------------------------
echo
echo "pkgmirror $("$binary" --version 2>/dev/null | awk '{print $2}') against nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///'), wrk -t$threads -d$duration, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| row | pkgmirror req/s | p50 ms | p99 ms | nginx req/s | p50 ms | p99 ms | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
    IFS='|' read -r name mine theirs <<<"$r"
    read -r a ap50 ap99 abad <<<"$mine"
    read -r b bp50 bp99 bbad <<<"$theirs"
    note=""
    [ "$abad" != 0 ] && note=" ($abad non-2xx/3xx from pkgmirror)"
    [ "$bbad" != 0 ] && note="$note ($bbad non-2xx/3xx from nginx)"
    printf '| %s%s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$name" "$note" "$a" "$ap50" "$ap99" "$b" "$bp50" "$bp99" \
        "$(python3 -c "print($a / max($b, 1))")"
done
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
read -r dttfb dtotal <<<"$direct"
read -r fttfb ftotal <<<"$first"
read -r lttfb ltotal <<<"$loopback_direct"
read -r mttfb mtotal <<<"$loopback_first"
echo
echo "| cold row | pkgmirror | direct from the upstream | ratio |"
echo "|---|---:|---:|---:|"
printf '| 50 MB first download, time to first byte | %.3f s | %.3f s | %s |\n' "$fttfb" "$dttfb" "$(ratio "$fttfb" "$dttfb")"
printf '| 50 MB first download, total | %.3f s | %.3f s | %s |\n' "$ftotal" "$dtotal" "$(ratio "$ftotal" "$dtotal")"
printf '| 20 clients on one cold 16 MB file, all done | %.3f s | %.3f s (one download) | %s |\n' "$twenty" "$one" "$(ratio "$twenty" "$one")"
printf '| 50 MB first download from the loopback upstream, total | %.3f s | %.3f s | %s |\n' "$mtotal" "$ltotal" "$(ratio "$mtotal" "$ltotal")"
printf '| 200 cold pages at once, upstream 100 ms, p50 | %.3f s | %.3f s | %s |\n' "$cold_p50" "$cold_direct_p50" "$(ratio "$cold_p50" "$cold_direct_p50")"
printf '| 200 cold pages at once, upstream 100 ms, p99 | %.3f s | %.3f s | %s |\n' "$cold_p99" "$cold_direct_p99" "$(ratio "$cold_p99" "$cold_direct_p99")"
echo
echo "files from an upstream paced at $((paced_rate / 1000000)) MB/s; pages: $cold_ok of 200 answered through pkgmirror, $cold_direct_ok directly"
echo
echo "pkgmirror RSS after the warm rows: $rss_after MB (peak $hwm_after MB)"
echo
echo "| 1 GiB file to 50 clients at once | complete | seconds | pkgmirror peak RSS |"
echo "|---|---:|---:|---:|"
echo "| while the mirror downloads it | $big_cold_ok of 50 | $big_cold_secs | $big_cold_peak MB |"
echo "| from the cache | $big_warm_ok of 50 | $big_warm_secs | $big_warm_peak MB |"
echo
echo "| on disk: $projects projects, $files files, every page in both formats | bytes | per project | per file | against the pages served |"
echo "|---|---:|---:|---:|---:|"
per() { python3 -c "print(f'{$1 / max($2, 1):,.0f}')"; }
printf '| pages served (HTML + JSON, uncompressed) | %s | %s | %s | 1.00 |\n' "$served" "$(per "$served" "$projects")" "$(per "$served" "$files")"
printf '| page store (pages.redb + page-bodies/) | %s | %s | %s | %s |\n' "$page_store" "$(per "$page_store" "$projects")" "$(per "$page_store" "$files")" "$(ratio "$page_store" "$served")"
printf '| catalogue (catalogue.sqlite3) | %s | %s | %s | %s |\n' "$catalogue" "$(per "$catalogue" "$projects")" "$(per "$catalogue" "$files")" "$(ratio "$catalogue" "$served")"
