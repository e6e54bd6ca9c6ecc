#!/usr/bin/env bash
# The image-copy race: `strata copy` against `skopeo copy`, on the full corpus image, on tmpfs.
#
# Usage: bench/image.sh
# Environment:
#   CORPUS=DIR    full test corpus (default /var/tmp/strata-corpus-full; built with
#                 shared/testdata/make-corpus.sh if absent, ~2.5 min, ~1.2 GB)
#   N=5           timed runs per measurement (median reported; one warm-up first)
#   TMPFS=DIR     tmpfs scratch (default /dev/shm): inputs are copied there first, outputs
#                 go there, so the race measures CPU cost, not this machine's disk
#
# The image is oci:corpus (5 layers, gzip blobs) and its docker-archive (plain layers).
# Each run starts from a removed destination (untimed, then sync):
#   oci -> docker-archive      both gunzip every layer, hash it and write the archive
#   docker-archive -> oci      layers stored uncompressed (skopeo needs
#                              --dest-oci-accept-uncompressed-layers for that)
#   docker-archive -> oci gzip layers compressed (strata --compress gzip; skopeo's default)
#   docker-archive -> oci zstd (strata --compress zstd; skopeo --dest-compress-format zstd)
#   oci -> oci-archive         blobs copied as they are (blob digests checked; again
#                              with strata --verify-diff-ids, which also gunzips and
#                              hashes every layer against its diffID, as skopeo cannot)
# and through the store (an overlay store on tmpfs):
#   save   strata save (store -> docker-archive) vs skopeo copy oci -> docker-archive and
#          podman save (vfs store)
#   load   strata load (docker-archive -> store) vs skopeo copy docker-archive -> oci
#          (plain layers) and podman load (vfs store)
# plus the peak RSS (/usr/bin/time) of both on the first two, and of strata save of a
# 1 GiB one-layer image (flat memory). Prints a markdown table with
# ratios (skopeo time / strata time: above 1 means Strata is faster; target >= 2x) and
# writes it to bench/results-image-YYYY-MM-DD.md. Run by bench/run.sh too.
set -euo pipefail
PROG=bench-image
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
TMPFS=${TMPFS:-/dev/shm}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[ "$(id -u)" -eq 0 ] || die "run as root (the corpus holds foreign owners and devices)"

need_packages skopeo:skopeo /usr/bin/time:time
ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
W=$TMPFS/strata-image-bench.$$
cleanup() { rm -rf -- "$W"; }
trap cleanup EXIT
mkdir -p "$W/in"
ERR=$W/last-error.log
say "copying the corpus image to $W/in (untimed)"
cp -r "$CORPUS/oci" "$W/in/oci"
cp "$CORPUS/corpus.docker-archive.tar" "$W/in/corpus.docker-archive.tar"
OCI=oci:$W/in/oci:corpus
DA=docker-archive:$W/in/corpus.docker-archive.tar
BYTES=$(stat -c %s "$W/in/corpus.docker-archive.tar")
GZBYTES=$(du -sb "$W/in/oci" | cut -f1)

clean() { rm -rf -- "$W/out" "$W/out.tar"; }
strata_copy() { "$STRATA" -q copy "$@"; }
skopeo_copy() { skopeo copy -q "$@"; }

rows=()
race() { # race TITLE BYTES "STRATA ARGS" "SKOPEO ARGS"
  local title=$1 bytes=$2 s k r
  local -a sa sk
  read -r -a sa <<<"$3"
  read -r -a sk <<<"$4"
  say "$title: strata copy ${sa[*]} vs skopeo copy ${sk[*]} (x$N)"
  s=$(measure clean strata_copy "${sa[@]}")
  k=$(measure clean skopeo_copy "${sk[@]}")
  r=$(ratio "$k" "$s")
  rows+=("| $title | $(cell "$s" "$bytes") | $(cell "$k" "$bytes") | ${r}x ($(verdict "$r" 2.0)) |")
}

race "oci -> docker-archive" "$BYTES" "$OCI docker-archive:$W/out.tar:strata/corpus:1" "$OCI docker-archive:$W/out.tar:strata/corpus:1"
race "docker-archive -> oci (plain layers)" "$BYTES" "$DA oci:$W/out:c" "--dest-oci-accept-uncompressed-layers $DA oci:$W/out:c"
race "docker-archive -> oci (gzip)" "$BYTES" "--compress gzip $DA oci:$W/out:c" "$DA oci:$W/out:c"
race "docker-archive -> oci (zstd)" "$BYTES" "--compress zstd $DA oci:$W/out:c" "--dest-compress-format zstd $DA oci:$W/out:c"
race "oci -> oci-archive" "$GZBYTES" "$OCI oci-archive:$W/out.tar:c" "$OCI oci-archive:$W/out.tar:c"
race "oci -> oci-archive, strata --verify-diff-ids" "$GZBYTES" "--verify-diff-ids $OCI oci-archive:$W/out.tar:c" "$OCI oci-archive:$W/out.tar:c"

# --- through the store --------------------------------------------------------------
need_packages podman:podman
ST=$W/store
PODMAN=(podman --root "$W/podman/root" --runroot "$W/podman/run" --storage-driver vfs
  --cgroup-manager cgroupfs --events-backend none)
say "loading the image into a store and into podman (untimed)"
"$STRATA" -q --root "$ST" load -i "$W/in/corpus.docker-archive.tar"
"${PODMAN[@]}" load -q -i "$W/in/corpus.docker-archive.tar" >/dev/null
strata_save() { "$STRATA" -q --root "$ST" save strata/corpus:1 -o "$W/out.tar"; }
podman_save() { "${PODMAN[@]}" save -q -o "$W/out.tar" docker.io/strata/corpus:1; }
skopeo_to_archive() { skopeo copy -q "$OCI" "docker-archive:$W/out.tar:strata/corpus:1"; }
fresh_store() { rm -rf -- "$W/out" "$W/load-store" "$W/podman-load"; }
strata_load() { "$STRATA" -q --root "$W/load-store" load -i "$W/in/corpus.docker-archive.tar"; }
podman_load() {
  podman --root "$W/podman-load/root" --runroot "$W/podman-load/run" --storage-driver vfs \
    --cgroup-manager cgroupfs --events-backend none load -q -i "$W/in/corpus.docker-archive.tar"
}
skopeo_to_oci() { skopeo copy -q --dest-oci-accept-uncompressed-layers "$DA" "oci:$W/out:c"; }
store_rows=()
store_race() { # TITLE CLEAN OURS PEER1 NAME1 PEER2 NAME2
  local title=$1 clean_fn=$2 s a b best
  say "$title (x$N)"
  s=$(measure "$clean_fn" "$3")
  a=$(measure "$clean_fn" "$4")
  b=$(measure "$clean_fn" "$6")
  best=$(awk -v a="$a" -v b="$b" 'BEGIN { print (a < b) ? a : b }')
  store_rows+=("| $title | $(cell "$s" "$BYTES") | $5 $(cell "$a" "$BYTES") | $7 $(cell "$b" "$BYTES") | $(ratio "$best" "$s")x ($(verdict "$(ratio "$best" "$s")" 2.0)) |")
}
store_race "save (store -> docker-archive)" clean strata_save skopeo_to_archive "skopeo copy oci ->" podman_save "podman save"
store_race "load (docker-archive -> store)" fresh_store strata_load skopeo_to_oci "skopeo copy -> oci" podman_load "podman load"

rss() { # rss CMD...: peak RSS in MiB
  clean
  /usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>"$ERR" || { tail "$ERR" >&2; die "failed: $*"; }
  awk '{ printf "%.1f", $1 / 1024 }' "$W/rss"
}
say "peak RSS"
rss_s1=$(rss "$STRATA" -q copy "$OCI" "docker-archive:$W/out.tar:strata/corpus:1")
rss_k1=$(rss skopeo copy -q "$OCI" "docker-archive:$W/out.tar:strata/corpus:1")
rss_s2=$(rss "$STRATA" -q copy "$DA" "oci:$W/out:c")
rss_k2=$(rss skopeo copy -q --dest-oci-accept-uncompressed-layers "$DA" "oci:$W/out:c")
say "a 1 GiB one-layer image (import-dir, untimed), then the peak RSS of saving it"
mkdir -p "$W/big"
head -c 1073741824 /dev/urandom >"$W/big/one-gib.bin"
"$STRATA" -q --root "$ST" import-dir "$W/big" bench/big:1
rm -rf -- "$W/big"
rss_big=$(rss "$STRATA" -q --root "$ST" save bench/big:1 -o "$W/out.tar")
rss_save=$(rss "$STRATA" -q --root "$ST" save strata/corpus:1 -o "$W/out.tar")

date_utc=$(date -u +%F)
results=$ROOT/bench/results-image-$date_utc.md
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)
{
  echo "# Strata image-copy race, $date_utc"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), Linux $(uname -r)."
  echo "Strata $("$STRATA" --version | cut -d' ' -f2) at $rev$dirty (release build); $(skopeo --version)."
  echo "Image: oci:corpus of $CORPUS (full): $(awk -v b="$BYTES" 'BEGIN { printf "%.0f MB", b / 1e6 }') of layer tars, $(awk -v b="$GZBYTES" 'BEGIN { printf "%.0f MB", b / 1e6 }') as gzip blobs."
  echo "Inputs and outputs on tmpfs ($TMPFS); median of $N runs after one warm-up; destination removed and \`sync\`ed before each run, untimed."
  echo "Load average (1, 5, 15 min) before the race: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg). Anything else running skews the times of both tools."
  echo "MB/s counts the image's layer tar bytes (gzip blob bytes for oci -> oci-archive). Ratio = skopeo time / strata time (target >= 2x)."
  echo "Both verify blob digests. Strata checks every diffID where it decompresses a layer anyway, and with \`--verify-diff-ids\` also for gzip blobs it stores as they are (decompressing them on a second thread); skopeo never checks diffIDs."
  echo
  echo "| copy | strata copy | skopeo copy | ratio |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Peak RSS: oci -> docker-archive strata $rss_s1 MiB, skopeo $rss_k1 MiB; docker-archive -> oci strata $rss_s2 MiB, skopeo $rss_k2 MiB."
  echo
  echo "## Save and load through the store (target: >= 2x the faster peer)"
  echo
  echo "\`strata save\` rebuilds each layer's original tar from the store (bit-exact, checked against its diffID) into the archive; \`strata load\` verifies and unpacks every layer into an overlay store on tmpfs. Peers: \`skopeo copy\` between files (no store at all), and podman with its vfs store (\`podman load\` unpacks, \`podman save\` re-tars)."
  echo
  echo "| job | strata | peer 1 | peer 2 | vs the faster peer |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${store_rows[@]}"
  echo
  echo "Peak RSS of strata save: the corpus image $rss_save MiB, a 1 GiB one-layer image $rss_big MiB (flat: the layer streams through)."

} >"$results.tmp"
mv "$results.tmp" "$results"
cat "$results"
say "written to $results"
