#!/usr/bin/env bash
# bench/snapshotter.sh [N]: containerd with `strata snapshotter` against its built-in
# overlayfs snapshotter, on Debian's containerd 1.6 and runc, all in a temporary directory
# (own root, state and sockets; stopped by PID). Runs are raced in alternating pairs
# (bench/lib.sh `race`: one warm-up each, then N pairs, default 3), so that the machine's
# load moves both alike:
#   1. `ctr images import` of the corpus image (docker-archive), each run in a fresh
#      namespace so that every layer is unpacked and committed [target >= 1.0x];
#   2. container start and exit, `ctr run --rm IMAGE ID true` [target >= 0.9x];
#   3. Prepare, Mounts and Commit round trips over the gRPC socket, p50 and p99
#      (crates/strata-snapshotter/examples/latency.rs, 200 rounds), against strata and,
#      when target/ctrdsuite/out/serve-overlay is built (tests/snapshotter.rs builds it),
#      containerd's overlay snapshotter served the same way.
# Prints median seconds and strata's speed relative to overlayfs (>1.0: strata is
# faster). Needs root, STRATA (default target/debug/strata), LATENCY (default the
# `latency` example beside STRATA; cargo build -p strata-snapshotter --example latency),
# and STRATA_CORPUS (default target/corpus).
set -euo pipefail
PROG=bench-snapshotter
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac
N=${1:-3}
STRATA=${STRATA:-$ROOT/target/debug/strata}
LATENCY=${LATENCY:-$(dirname "$STRATA")/examples/latency}
OVERLAY_SERVER=${OVERLAY_SERVER:-$ROOT/target/ctrdsuite/out/serve-overlay}
CORPUS=${STRATA_CORPUS:-$ROOT/target/corpus}
ARCHIVE=$CORPUS/corpus.docker-archive.tar
[ "$(id -u)" -eq 0 ] || die "needs root"
[ -x "$STRATA" ] || die "no $STRATA (cargo build -p strata-cli)"
[ -x "$LATENCY" ] || die "no $LATENCY (cargo build -p strata-snapshotter --example latency)"
[ -f "$ARCHIVE" ] || die "no $ARCHIVE (STRATA_CORPUS)"

T=$(mktemp -d /tmp/strata-bench-snap.XXXXXX)
ERR=$T/error.log
SPID="" CPID="" OPID="" LPID=""
cleanup() {
  local p
  for p in $CPID $SPID $OPID $LPID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  for m in $(awk -v t="$T" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$T" 2>/dev/null || say "left $T (busy mounts?)"
}
trap cleanup EXIT

"$STRATA" --root "$T/strata" snapshotter --address "$T/strata.sock" 2>"$T/strata.log" &
SPID=$!
cat >"$T/config.toml" <<CONF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[proxy_plugins.strata]
  type = "snapshot"
  address = "$T/strata.sock"
CONF
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CPID=$!
for _ in $(seq 300); do ctr -a "$T/containerd.sock" version >/dev/null 2>&1 && [ -S "$T/strata.sock" ] && break; sleep 0.1; done
ctr -a "$T/containerd.sock" version >/dev/null || die "containerd did not start ($T/containerd.log)"

c() { ctr -a "$T/containerd.sock" "$@"; }
IMAGE=docker.io/strata/corpus:1

# 1. imports, each into a namespace of its own (the clean step picks the next one)
NS=0
next_namespace() { NS=$((NS + 1)); }
import_strata() { c -n "bench-import-$NS" images import --snapshotter strata "$ARCHIVE"; }
import_overlayfs() { c -n "bench-import-$NS" images import --snapshotter overlayfs "$ARCHIVE"; }
read -r i_s i_o i_r _ _ <<<"$(race next_namespace import_strata import_overlayfs)"

# 2. container start and exit, on an image imported once per snapshotter
c -n bench-run images import --snapshotter strata "$ARCHIVE" >/dev/null
c -n bench-run-overlayfs images import --snapshotter overlayfs "$ARCHIVE" >/dev/null
RUNS=0
run_strata() { RUNS=$((RUNS + 1)); c -n bench-run run --snapshotter strata --rm "$IMAGE" "bench-$RUNS" true; }
run_overlayfs() { RUNS=$((RUNS + 1)); c -n bench-run-overlayfs run --snapshotter overlayfs --rm "$IMAGE" "bench-$RUNS" true; }
read -r r_s r_o r_r _ _ <<<"$(race nothing run_strata run_overlayfs)"

echo "containerd $(c version | awk '/Version/ { print $2; exit }'), $N alternating pairs, median seconds; load $(loadavg)"
printf '%-30s %10s %10s %8s\n' "" overlayfs strata speed
printf '%-30s %10s %10s %7sx\n' "ctr images import (corpus)" "$i_o" "$i_s" "$i_r"
printf '%-30s %10s %10s %7sx\n' "ctr run --rm IMAGE true" "$r_o" "$r_s" "$r_r"

# 3. latency over the socket
echo
echo "gRPC round trips (one client, 200 rounds), microseconds"
printf '%-10s %12s %12s %12s %12s\n' "" "strata p50" "strata p99" "overlay p50" "overlay p99"
# A server of its own: containerd's garbage collection would remove from the one it uses
# the snapshots containerd did not make.
"$STRATA" --root "$T/strata-latency" snapshotter --address "$T/latency.sock" 2>"$T/latency.log" &
LPID=$!
for _ in $(seq 100); do [ -S "$T/latency.sock" ] && break; sleep 0.1; done
"$LATENCY" "$T/latency.sock" 200 >"$T/latency.strata"
if [ -x "$OVERLAY_SERVER" ]; then
  "$OVERLAY_SERVER" "$T/overlay-root" "$T/overlay.sock" 2>"$T/overlay.log" &
  OPID=$!
  for _ in $(seq 100); do [ -S "$T/overlay.sock" ] && break; sleep 0.1; done
  "$LATENCY" "$T/overlay.sock" 200 >"$T/latency.overlay"
else
  printf '%s - -\n' Prepare Mounts Commit >"$T/latency.overlay"
fi
paste -d' ' "$T/latency.strata" "$T/latency.overlay" |
  awk '{ printf "%-10s %12s %12s %12s %12s\n", $1, $2, $3, $5, $6 }'
