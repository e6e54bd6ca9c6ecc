#!/usr/bin/env bash
# Loading the full corpus image (its docker-archive, plain layers) into an overlay store
# on tmpfs: `strata load --jobs J` for J in $JOBS, and `podman load` (overlay storage, as
# strata's; PODMAN_DRIVER=vfs for podman's copying driver).
# bench/run.sh calls it and appends its markdown; or run it alone: bench/load.sh > load.md
#
# Targets (issue 14): --jobs 2 at least 1.5x --jobs 1 (one layer after another) on
# 2 cores, and at least 10x podman load.
#
# The jobs values run in turn, round by round, the order rotating from round to round,
# each into a fresh store (removed and synced, untimed); the ratio against --jobs 1 is
# the median of the per-round ratios. podman load races strata load --jobs 2 the same
# way, in $N_PODMAN pairs (it is slow).
# Environment: CORPUS, N, TMPFS, STRATA as for bench/run.sh; JOBS="1 2 4"; N_PODMAN=3;
# PODMAN_DRIVER=overlay.
set -euo pipefail
PROG=bench-load
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
N_PODMAN=${N_PODMAN:-3}
TMPFS=${TMPFS:-/dev/shm}
read -r -a JOBS <<<"${JOBS:-1 2 4}"
PODMAN_DRIVER=${PODMAN_DRIVER:-overlay}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[ "$(id -u)" -eq 0 ] || die "run as root (overlay stores, owners, devices)"
ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata
need_packages podman:podman

LOAD_BEFORE=$(loadavg)
W=$TMPFS/strata-load-bench.$$
cleanup() { rm -rf -- "$W"; }
trap cleanup EXIT
mkdir -p "$W/in"
ERR=$W/last-error.log
cp "$CORPUS/corpus.docker-archive.tar" "$W/in/corpus.docker-archive.tar"
ARCHIVE=$W/in/corpus.docker-archive.tar
BYTES=$(stat -c %s "$ARCHIVE")

fresh() { rm -rf -- "$W/store" "$W/podman"; }
strata_load() { "$STRATA" -q --root "$W/store" --driver overlay load --jobs "$1" -i "$ARCHIVE"; }
strata_load2() { strata_load 2; }
podman_load() {
  podman --root "$W/podman/root" --runroot "$W/podman/run" --storage-driver "$PODMAN_DRIVER" \
    --cgroup-manager cgroupfs --events-backend none load -q -i "$ARCHIVE"
}
timed() { # timed CMD...: runs CMD in a fresh store, prints nanoseconds
  local t0 t1
  fresh
  sync
  t0=$(date +%s%N)
  "$@" >/dev/null 2>"$ERR" || { tail -n 20 "$ERR" >&2; die "failed: $*"; }
  t1=$(date +%s%N)
  echo $((t1 - t0))
}

say "strata load --jobs ${JOBS[*]}, in turn, x$N (one warm-up round)"
declare -A T
k=${#JOBS[@]}
for ((i = 0; i <= N; i++)); do
  for ((j = 0; j < k; j++)); do
    J=${JOBS[$(((i + j) % k))]}
    t=$(timed strata_load "$J")
    [ "$i" -eq 0 ] || T[$J]+="$t "
  done
done
# Ratio of each J against the first value of JOBS, per round.
base=${JOBS[0]}
read -r -a tb <<<"${T[$base]}"
rows=()
for J in "${JOBS[@]}"; do
  read -r -a tj <<<"${T[$J]}"
  rs=()
  for ((i = 0; i < N; i++)); do rs+=("$(awk -v a="${tj[$i]}" -v b="${tb[$i]}" 'BEGIN { printf "%.6f", b / a }')"); done
  r=$(printf '%s\n' "${rs[@]}" | sort -g | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m }')
  m=$(median_ns "${tj[@]}")
  v=""
  [ "$J" = 2 ] && v=" ($(verdict "$r" 1.5))"
  rows+=("| strata load --jobs $J | $(cell "$m" "$BYTES") | ${r}x$v |")
done

say "strata load --jobs 2 and podman load, in turn, x$N_PODMAN"
pn=$N
N=$N_PODMAN
read -r ps pp pr psc ppc < <(race fresh strata_load2 podman_load)
N=$pn
LOAD_AFTER=$(loadavg)

echo "## Load into an overlay store: layers in parallel (targets: --jobs 2 >= 1.5x --jobs 1, >= 10x podman load)"
echo
echo "\`strata load -i\` of the corpus docker-archive ($(awk -v b="$BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }'), 5 plain layers) into a fresh overlay store on tmpfs: each layer verified against its diffID, unpacked with its recipe, made visible only once its parent is."
echo "With --jobs J above 1, J layers run at once, each in its own directory; what needs to see a lower layer (a missing parent directory, a whiteout, a hard link to a lower file, an opaque directory) waits for it, and a layer waiting for its parent gives its slot to the next layer (2J in hand): a layer complete but for its commit needs none back, one with more to write takes the next free slot before any layer not yet started, and those start in layer order."
echo "The jobs values run in turn, round by round (order rotating), $N rounds after a warm-up; the ratio is the median of the per-round ratios against --jobs ${JOBS[0]}."
echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| command | median | vs --jobs ${JOBS[0]} |"
echo "| --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "podman load ($PODMAN_DRIVER storage, $(podman --version | cut -d' ' -f3)) against strata load --jobs 2, in turn, $N_PODMAN pairs: podman $(cell "$pp" "$BYTES"), strata $(cell "$ps" "$BYTES"): **${pr}x** ($(verdict "$pr" 10)); CPU podman $ppc s, strata $psc s."
