#!/usr/bin/env bash
# The store's benchmarks (issue targets in brackets); bench/run.sh calls it and appends
# its markdown to the results, or run it alone: bench/store.sh > store.md
#
#   apply     `strata layer apply` into a store vs `strata layer unpack` into a plain
#             directory, same layer, same file system [store overhead < 10%]; overlay
#             base layers, a layer on a parent (written into the upper directory over
#             its parent, as if through a mount), vfs
#   changes   `strata layer changes` of a container layer with one changed file over a
#             100k-file lower layer [< 50 ms on overlay]; vfs (full tree compare) beside it
#   mount     `strata layer mount` / `umount` of a container layer, against the bare
#             `mount -t overlay` / `umount` of the same directories (the floor)
#   ls        `strata layer ls` with 10k layers in the store [< 100 ms]
#
# Everything runs on tmpfs ($TMPFS), where the disk's noise does not hide CPU cost.
# Environment: CORPUS, N, BENCH_WORK, TMPFS, STRATA as for bench/run.sh; LS_LAYERS=10000.
set -euo pipefail
PROG=bench-store
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
BENCH_WORK=${BENCH_WORK:-/var/tmp/strata-bench}
TMPFS=${TMPFS:-/dev/shm}
LS_LAYERS=${LS_LAYERS:-10000}
[ "$(id -u)" -eq 0 ] || die "run as root (overlay mounts, owners, devices)"
ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata
mkdir -p "$BENCH_WORK"
ERR=$BENCH_WORK/store-error.log
W=$TMPFS/strata-bench-store.$$
cleanup() {
  for m in $(awk -v w="$W" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf -- "$W"
}
trap cleanup EXIT
mkdir -p "$W"

L1=$(plain_layer 1)
L3=$(plain_layer 3)
L4=$(plain_layer 4)

st() { "$STRATA" -q --root "$@"; }

# --- apply vs unpack ------------------------------------------------------------------
# Args of each: LAYER ROOT DRIVER [PARENT_LAYER]
fresh_store() {
  rm -rf -- "$2"
  mkdir -p "$2"
  if [ -n "${4:-}" ]; then
    st "$2" --driver "$3" layer create base >/dev/null
    st "$2" layer apply base -i "$4" >/dev/null
    st "$2" layer create --parent base x >/dev/null
  else
    st "$2" --driver "$3" layer create x >/dev/null
  fi
}
store_apply() { st "$2" layer apply x -i "$1"; }
fresh_tree() {
  rm -rf -- "$2"
  mkdir -p "$2"
  if [ -n "${4:-}" ]; then "$STRATA" -q layer unpack -i "$4" "$2"; fi
}
plain_unpack() { "$STRATA" -q layer unpack -i "$1" "$2"; }
recipe_unpack() { rm -f -- "$2.recipe"; "$STRATA" -q layer unpack -i "$1" "$2" --recipe "$2.recipe"; }

apply_rows=()
apply_row() { # NAME LAYER DRIVER [PARENT]
  local name=$1 layer=$2 driver=$3 parent=${4:-} a u r b over overr
  say "apply vs unpack: $name ($driver) x$N"
  a=$(measure fresh_store store_apply "$layer" "$W/store" "$driver" "$parent")
  u=$(measure fresh_tree plain_unpack "$layer" "$W/tree" "$driver" "$parent")
  r=$(measure fresh_tree recipe_unpack "$layer" "$W/tree" "$driver" "$parent")
  b=$(stat -c %s "$layer")
  over=$(awk -v a="$a" -v u="$u" 'BEGIN { printf "%+.1f", (a / u - 1) * 100 }')
  overr=$(awk -v a="$a" -v u="$r" 'BEGIN { printf "%+.1f", (a / u - 1) * 100 }')
  apply_rows+=("| $name | $driver | $(cell "$a" "$b") | $(cell "$u" "$b") | ${over}% | $(cell "$r" "$b") | ${overr}% ($(awk -v o="$overr" 'BEGIN { print (o + 0 < 10) ? "yes" : "**no**" }')) |")
  rm -rf -- "$W/store" "$W/tree"
}
apply_row "1 base rootfs" "$L1" overlay
apply_row "3 small files" "$L3" overlay
apply_row "4 big file" "$L4" overlay
apply_row "3 small files on layer 1" "$L3" overlay "$L1"
apply_row "1 base rootfs" "$L1" vfs
apply_row "3 small files on layer 1" "$L3" vfs "$L1"

# --- changes over 100k files ------------------------------------------------------------
BIG_TAR=$BENCH_WORK/100k-files.tar
if [ ! -f "$BIG_TAR" ]; then
  say "a layer of 100k files (1000 dirs of 100), packed once to $BIG_TAR"
  t=$W/100k
  mkdir -p "$t"
  python3 - "$t" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, "d%04d" % d)
    os.mkdir(p)
    for f in range(100):
        with open(os.path.join(p, "f%03d" % f), "w") as fh:
            fh.write("%d/%d\n" % (d, f))
PY
  "$STRATA" -q layer pack "$t" -o "$BIG_TAR.tmp"
  mv "$BIG_TAR.tmp" "$BIG_TAR"
  rm -rf -- "$t"
fi
changes_rows=()
run_changes() { st "$1" layer changes ctr; }
for driver in overlay vfs; do
  R=$W/changes-$driver
  say "changes over 100k files ($driver) x$N"
  st "$R" --driver "$driver" layer create base >/dev/null
  st "$R" layer apply base -i "$BIG_TAR" >/dev/null
  st "$R" layer create --rw --parent base ctr >/dev/null
  M=$("$STRATA" --root "$R" layer mount ctr)
  echo changed >"$M/d0500/f050"
  n=$("$STRATA" --root "$R" layer changes ctr | wc -l)
  [ "$n" = 2 ] || die "expected 2 changes (C /d0500, C /d0500/f050), got $n"
  t=$(measure nothing run_changes "$R")
  ms=$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')
  target="-"
  [ "$driver" = overlay ] && target=$(awk -v m="$ms" 'BEGIN { print (m + 0 < 50) ? "yes" : "**no**" }')
  changes_rows+=("| $driver | ${ms} ms | $target |")
  st "$R" layer umount ctr >/dev/null
done

# --- mount / umount -----------------------------------------------------------------------
R=$W/changes-overlay
ctr_mount() { st "$1" layer mount ctr; }
ctr_umount() { st "$1" layer umount ctr; }
ensure_mounted() { st "$1" layer mount ctr >/dev/null; }
ensure_unmounted() { if mountpoint -q "$1/layers/ctr/merged"; then st "$1" layer umount ctr >/dev/null; fi; }
say "mount / umount latency x$((N * 4))"
NN=$N
N=$((N * 4))
tm=$(measure ensure_unmounted ctr_mount "$R")
tu=$(measure ensure_mounted ctr_umount "$R")
ensure_unmounted "$R"
RAW=$W/raw
mkdir -p "$RAW/u" "$RAW/w" "$RAW/m"
raw_mount() { mount -t overlay overlay -o "lowerdir=$1/layers/base/diff,upperdir=$2/u,workdir=$2/w,index=off,redirect_dir=off,metacopy=off" "$2/m"; }
raw_umount() { umount "$2/m"; }
raw_unmounted() { if mountpoint -q "$2/m"; then umount "$2/m"; fi; }
raw_mounted() { mountpoint -q "$2/m" || raw_mount "$@"; }
rm_=$(measure raw_unmounted raw_mount "$R" "$RAW")
ru_=$(measure raw_mounted raw_umount "$R" "$RAW")
raw_unmounted "$R" "$RAW"
N=$NN
msf() { awk -v t="$1" 'BEGIN { printf "%.1f ms", t * 1000 }'; }

# --- ls with many layers ------------------------------------------------------------------
R=$W/many
say "layer ls with $LS_LAYERS layers (creating them: two processes at a time)"
st "$R" --driver overlay layer create seed >/dev/null
seq 1 "$LS_LAYERS" | xargs -P 2 -n 200 sh -c 'for i; do "$0" -q --root "'"$R"'" layer create "l$i" >/dev/null || exit 255; done' "$STRATA"
count=$(st "$R" --json layer ls | grep -c '"id"')
[ "$count" = $((LS_LAYERS + 1)) ] || die "expected $((LS_LAYERS + 1)) layers, listed $count"
ls_table() { st "$1" layer ls; }
ls_json() { st "$1" --json layer ls; }
lt=$(measure nothing ls_table "$R")
lj=$(measure nothing ls_json "$R")
ls_ok() { awk -v t="$1" 'BEGIN { print (t * 1000 < 100) ? "yes" : "**no**" }'; }

# --- report -----------------------------------------------------------------------------
echo "## Store (tmpfs: $TMPFS)"
echo
echo "### Apply into the store vs unpack into a plain directory (target: overhead < 10%)"
echo
echo "Both are the same release \`strata\`, Landlock on, median of $N. Apply also records the layer (database transaction, recipe moved into place, \`syncfs\`); a layer on a parent is written straight into its upper directory over the parent's (overlay: copies up, whiteouts and opaque directories as overlayfs would make them, no mount) or after a copy of the parent's tree (vfs), and is compared with unpacking onto a directory that already holds the parent."
echo
echo "Apply records a recipe (the bit-exact re-export), so \`unpack --recipe\` is the same work without the store: the last column is the store's own overhead (database, locks, staging, \`syncfs\`, and for vfs the copy of the parent's tree, which is what vfs is)."
echo
echo "| layer | driver | strata layer apply | strata layer unpack | overhead | unpack --recipe | store overhead |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${apply_rows[@]}"
echo
echo "### Changes with one changed file over a 100k-file lower layer (target: < 50 ms on overlay)"
echo
echo "\`strata layer changes ctr\` (process start, store open and recovery check included), median of $N. Overlay reads only the upper directory; vfs compares the whole trees."
echo
echo "| driver | time | target |"
echo "| --- | --- | --- |"
printf '%s\n' "${changes_rows[@]}"
echo
echo "### Mount and unmount latency"
echo
echo "Median of $((N * 4)). \`strata layer mount\` opens the store, takes its lock, mounts with the new mount API and records the count; the floor is \`mount -t overlay\` of the same lower with a fresh upper, as a command."
echo
echo "| | strata | mount(8) / umount(8) |"
echo "| --- | --- | --- |"
echo "| mount | $(msf "$tm") | $(msf "$rm_") |"
echo "| umount | $(msf "$tu") | $(msf "$ru_") |"
echo
echo "### Listing $((LS_LAYERS + 1)) layers (target: < 100 ms)"
echo
echo "| command | time | target |"
echo "| --- | --- | --- |"
echo "| strata layer ls | $(msf "$lt") | $(ls_ok "$lt") |"
echo "| strata --json layer ls | $(msf "$lj") | $(ls_ok "$lj") |"
echo
