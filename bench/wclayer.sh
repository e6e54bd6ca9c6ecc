#!/usr/bin/env bash
# Benchmarks Windows layers: `strata wclayer import` and `export` of a Windows layer of
# >= 200 MB in many small files, against Strata's own Linux path on the same content
# (`strata layer unpack` and `strata layer pack`), on tmpfs (CPU cost; the disk of this
# machine varies 3-8x between runs). Target: within 1.5x of the Linux path. Also the
# peak RSS of each (memory must stay flat).
#
# Usage: bench/wclayer.sh            (N=5 runs each, medians; N=3 for a quicker run)
#   FILES=22000 bench/wclayer.sh     number of files in the generated tree
# The content: FILES files of 1 B..40 KiB (mean ~11 KiB) in 440 directories, made once
# with Python into TMPFS; packed by `strata layer pack` (the Linux layer) and converted
# by `strata wclayer from-rootfs` (the Windows layer: same files, with SDs and records).
# Called by bench/run.sh; prints a markdown table and appends it to bench/results-DATE.md.
set -euo pipefail
PROG=wclayer.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac
N=${N:-5}
FILES=${FILES:-22000}
TMPFS=${TMPFS:-/dev/shm}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
need_packages /usr/bin/time:time python3:python3
build_strata

W=$TMPFS/strata-wcbench.$$
trap 'rm -rf -- "$W"' EXIT
mkdir -p "$W"
say "generating $FILES files in $W/tree"
python3 - "$W/tree" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(20261201)
for i in range(n):
    d = os.path.join(root, "d%02d" % (i % 40), "s%02d" % (i % 11))
    os.makedirs(d, exist_ok=True)
    size = min(int(r.expovariate(1 / 11000)) + 1, 40960)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(r.randbytes(size))
PY
"$STRATA" -q layer pack "$W/tree" -o "$W/linux.tar"
"$STRATA" -q wclayer from-rootfs -i "$W/linux.tar" -o "$W/win.tar"
printf '\0%.0s' $(seq 1024) >"$W/empty.tar"
"$STRATA" -q wclayer from-rootfs -i "$W/empty.tar" -o "$W/base.tar"
"$STRATA" -q wclayer import -i "$W/base.tar" "$W/base"
mb=$(awk -v b="$(stat -c %s "$W/win.tar")" 'BEGIN { printf "%.0f", b / 1e6 }')
lmb=$(awk -v b="$(stat -c %s "$W/linux.tar")" 'BEGIN { printf "%.0f", b / 1e6 }')
say "Windows layer: $mb MB, Linux layer: $lmb MB, $FILES files"

# t CMD...: wall seconds of one run.
t() { local a; a=$(now); "$@" >/dev/null; awk -v a="$a" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1 | awk '{ printf "%.0f", $1 / 1024 }'; }

declare -a wi li we le
for run in $(seq "$N"); do
  rm -rf "$W/L" "$W/D"
  wi+=("$(t "$STRATA" -q wclayer import -i "$W/win.tar" "$W/L" --parent "$W/base")")
  li+=("$(t "$STRATA" -q layer unpack --no-sandbox -i "$W/linux.tar" "$W/D")")
  we+=("$(t "$STRATA" -q wclayer export "$W/L" -o /dev/null --parent "$W/base")")
  le+=("$(t "$STRATA" -q layer pack "$W/D" -o /dev/null)")
  say "run $run: import ${wi[-1]}s / unpack ${li[-1]}s, export ${we[-1]}s / pack ${le[-1]}s"
done
"$STRATA" -q wclayer export "$W/L" -o "$W/back.tar" --parent "$W/base"
"$STRATA" -q wclayer import -i "$W/back.tar" "$W/L2" --parent "$W/base"
"$STRATA" -q wclayer export "$W/L2" -o "$W/back2.tar" --parent "$W/base"
cmp -s "$W/back.tar" "$W/back2.tar" || die "export → import → export is not byte-identical"
rm -rf "$W/L3" "$W/D3"
rss_wi=$(rss "$STRATA" -q wclayer import -i "$W/win.tar" "$W/L3" --parent "$W/base")
rss_li=$(rss "$STRATA" -q layer unpack --no-sandbox -i "$W/linux.tar" "$W/D3")
rss_we=$(rss "$STRATA" -q wclayer export "$W/L3" -o /dev/null --parent "$W/base")
rss_le=$(rss "$STRATA" -q layer pack "$W/D3" -o /dev/null)
mwi=$(median "${wi[@]}"); mli=$(median "${li[@]}"); mwe=$(median "${we[@]}"); mle=$(median "${le[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
mbs() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.0f", m / s }'; }
results=${RESULTS:-$ROOT/bench/results-$(date +%F).md}
{
  echo
  echo "## Windows layers (bench/wclayer.sh): $FILES small files, Windows layer $mb MB, Linux layer $lmb MB, tmpfs, median of $N"
  echo
  echo "Import: \`strata wclayer import -i L.tar FOLDER --parent BASE\` (backup streams with SDs into a transport folder) against \`strata layer unpack --no-sandbox\` of the same content as a Linux layer. Export: \`strata wclayer export FOLDER -o /dev/null\` against \`strata layer pack DIR -o /dev/null\`. Target: Windows within 1.5x of Linux (ratio <= 1.5)."
  echo
  echo "| job | strata wclayer | MB/s | strata layer (Linux) | MB/s | ratio (target <= 1.5x) | peak RSS wclayer | peak RSS layer |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  echo "| import vs unpack | ${mwi}s | $(mbs "$mb" "$mwi") | ${mli}s | $(mbs "$lmb" "$mli") | $(ratio "$mwi" "$mli") | $rss_wi MiB | $rss_li MiB |"
  echo "| export vs pack | ${mwe}s | $(mbs "$mb" "$mwe") | ${mle}s | $(mbs "$lmb" "$mle") | $(ratio "$mwe" "$mle") | $rss_we MiB | $rss_le MiB |"
  echo
  echo "Export → import → export of this layer was byte-identical."
} | tee -a "$results"
say "appended to $results"
