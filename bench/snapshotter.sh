#!/usr/bin/env bash
# bench/snapshotter.sh [RUNS]: containerd with `strata snapshotter` against its built-in
# overlayfs snapshotter, on Debian's containerd 1.6 and runc, all in a temporary directory
# (own root, state and sockets; stopped by PID):
#   1. `ctr images import` of the corpus image (docker-archive), each run in a fresh
#      namespace so that every layer is unpacked;
#   2. container start and exit, `ctr run --rm IMAGE ID true`.
# Prints the median seconds of RUNS runs (default 3) and strata's speed relative to
# overlayfs (>1.0: strata is faster). Needs root, target/debug/strata (or $STRATA), and
# STRATA_CORPUS (default target/corpus).
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-$ROOT/target/debug/strata}
CORPUS=${STRATA_CORPUS:-$ROOT/target/corpus}
ARCHIVE=$CORPUS/corpus.docker-archive.tar
[ "$(id -u)" -eq 0 ] || { echo "snapshotter.sh: needs root" >&2; exit 1; }
[ -x "$STRATA" ] || { echo "snapshotter.sh: no $STRATA (cargo build -p strata-cli)" >&2; exit 1; }
[ -f "$ARCHIVE" ] || { echo "snapshotter.sh: no $ARCHIVE (STRATA_CORPUS)" >&2; exit 1; }

T=$(mktemp -d /tmp/strata-bench-snap.XXXXXX)
SPID="" CPID=""
cleanup() {
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null || true
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
  rm -rf "$T" 2>/dev/null || echo "snapshotter.sh: left $T (busy mounts?)" >&2
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

# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# seconds CMD...: wall seconds of one run
seconds() { local s=$EPOCHREALTIME; "$@" >/dev/null; awk -v s="$s" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", e - s }'; }

IMAGE=docker.io/strata/corpus:1
declare -A import run
for sn in overlayfs strata; do
  times=() rtimes=()
  for i in $(seq "$RUNS"); do
    ns=bench-$sn-$i
    times+=("$(seconds ctr -a "$T/containerd.sock" -n "$ns" images import --snapshotter "$sn" "$ARCHIVE")")
    img=$(ctr -a "$T/containerd.sock" -n "$ns" images ls -q | head -n1)
    rtimes+=("$(seconds ctr -a "$T/containerd.sock" -n "$ns" run --snapshotter "$sn" --rm "$img" "bench-$i" true)")
  done
  import[$sn]=$(printf '%s\n' "${times[@]}" | median)
  run[$sn]=$(printf '%s\n' "${rtimes[@]}" | median)
done
echo "containerd $(ctr -a "$T/containerd.sock" version | awk '/Version/ { print $2; exit }'), $RUNS runs, median seconds"
printf '%-32s %10s %10s %8s\n' "" overlayfs strata "speed"
for what in import run; do
  declare -n m=$what
  label=$([ "$what" = import ] && echo "ctr images import (corpus)" || echo "ctr run --rm IMAGE true")
  printf '%-32s %10s %10s %7.2fx\n' "$label" "${m[overlayfs]}" "${m[strata]}" "$(awk -v o="${m[overlayfs]}" -v s="${m[strata]}" 'BEGIN { print o / s }')"
done
