#!/usr/bin/env bash
# Two builds of strata raced against each other on the main rows, to show that a change
# (a refactor) moves no row by more than its noise. Prints markdown; run it alone:
#   OLD=/path/strata-old NEW=/path/strata-new bench/versus.sh > versus.md
#
#   unpack  strata layer unpack -i L.tar DIR            (layers 1, 3, 4 of oci:corpus)
#   pack    strata layer pack DIR -o OUT.tar            (the trees of layers 3 and 4)
#   load    strata load -i corpus.docker-archive.tar    (into a fresh overlay store)
#   copy    strata copy docker-archive:... oci:OUT:corpus
#
# Each row is bench/lib.sh's `race`: NEW and OLD in turn, run by run, the order alternating,
# one warm-up each, N pairs, each run into a fresh destination (removed and synced,
# untimed), on tmpfs. The ratio is the median of the per-pair ratios OLD / NEW (above 1:
# NEW is faster). The noise row races OLD against itself the same way.
# Environment: OLD, NEW (binaries, required); CORPUS (default /var/tmp/strata-corpus-full),
# N=11, BENCH_WORK (plain layer tars kept there), TMPFS=/dev/shm.
set -euo pipefail
PROG=bench-versus
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-11}
BENCH_WORK=${BENCH_WORK:-/var/tmp/strata-bench}
TMPFS=${TMPFS:-/dev/shm}
[ -x "${OLD:-}" ] && [ -x "${NEW:-}" ] || die "OLD and NEW must name strata binaries"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[ "$(id -u)" -eq 0 ] || die "run as root (overlay stores, owners, devices)"
[ -f "$CORPUS/layers.tsv" ] || die "no corpus at $CORPUS (make-corpus.sh builds one)"

LOAD_BEFORE=$(loadavg)
W=$TMPFS/strata-versus.$$
cleanup() { rm -rf -- "$W"; }
trap cleanup EXIT
mkdir -p "$W/in"
ERR=$W/last-error.log
BENCH_WORK=$W/in # the plain layer tars on tmpfs too
cp "$CORPUS/corpus.docker-archive.tar" "$W/in/"
ARCHIVE=$W/in/corpus.docker-archive.tar

old() { "$OLD" -q "$@"; }
new() { "$NEW" -q "$@"; }
fresh() { rm -rf -- "$W/dst" "$W/dst.tar"; }
# Each operation takes the binary's name (old or new) first, so that one clean-up and one
# argument list serve both sides.
unpack() { "$1" layer unpack -i "$2" "$W/dst"; }
pack() { "$1" layer pack "$2" -o "$W/dst.tar"; }
load() { "$1" --root "$W/dst" --driver overlay load -i "$ARCHIVE"; }
copy() { "$1" copy "docker-archive:$ARCHIVE" "oci:$W/dst:corpus"; }
for op in unpack pack load copy; do
  eval "${op}_old() { $op old \"\$@\"; }; ${op}_new() { $op new \"\$@\"; }"
done

rows=()
row() { # NAME OP ARG: one race of OP's new and old sides
  local name=$1 op=$2 arg=${3:-} n o r nc oc
  say "$name: new and old in turn x$N"
  read -r n o r nc oc < <(race fresh "${op}_new" "${op}_old" "$arg")
  rows+=("| $name | $n s | $o s | ${r}x | $nc s / $oc s |")
}

for i in 1 3 4; do
  L=$(plain_layer "$i")
  row "unpack layer $i ($(($(stat -c %s "$L") / 1000000)) MB)" unpack "$L"
done
for i in 3 4; do
  T=$W/tree$i
  new layer unpack -i "$(plain_layer "$i")" "$T"
  row "pack tree of layer $i" pack "$T"
done
row "load corpus into a store" load
row "copy docker-archive -> oci" copy
# The noise: the old build against itself, on the row with the most files.
unpack_old_again() { unpack old "$@"; }
say "noise: old and old in turn x$N"
read -r n o r nc oc < <(race fresh unpack_old unpack_old_again "$(plain_layer 3)")
rows+=("| noise: old vs old, unpack layer 3 | $n s | $o s | ${r}x | $nc s / $oc s |")

echo "| row | new (median) | old (median) | old/new (median of pairs) | CPU new / old |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "N=$N pairs per row (after one warm-up pair), tmpfs, corpus $CORPUS; load average before $LOAD_BEFORE, after $(loadavg)."
