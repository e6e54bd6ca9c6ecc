#!/usr/bin/env bash
# The benchmark race: Strata against GNU tar, umoci and tar|openssl, in one run.
#
# Usage: bench/run.sh     (also runs bench/load.sh, bench/registry.sh, bench/wclayer.sh,
#                          bench/store.sh and bench/image.sh, appending)
# Environment:
#   CORPUS=DIR        full test corpus (default /var/tmp/strata-corpus-full; built with
#                     shared/testdata/make-corpus.sh if absent, ~2.5 min, ~1.2 GB)
#   N=5               timed runs per measurement (median reported; one warm-up first)
#   BENCH_WORK=DIR    on-disk work area (default /var/tmp/strata-bench; the plain layer
#                     tars and umoci images stay there for the next run)
#   TMPFS=DIR         tmpfs scratch (default /dev/shm)
#   STRATA=BIN        the strata binary to race (default: a release build of this tree)
#   FSES="tmpfs disk" file systems raced on (the issue targets are on tmpfs)
#   ONLY=layers       stop after the layer races and bench/load.sh (skip registry, wclayer,
#                     store and image)
#   RESULTS=FILE      where the tables go (default bench/results-YYYY-MM-DD.md, replaced)
#
# Strata and its peer race in turn, run by run (bench/lib.sh `race`): the machine's load
# then moves both alike, and the median of the per-pair ratios is the number that holds
# under that noise. The load average before and after is recorded.
#
# Three layers of oci:corpus, gunzipped to plain tars first (tar cost, not gzip):
# 1 the base root filesystem, 3 the many-small-files layer, 4 the big-file layer.
# On tmpfs and on disk, each run with a cleaned destination (rm, then sync, untimed):
#   unpack  strata layer unpack -i L.tar DIR   vs  tar -xpf L.tar -C DIR, the same with
#           sha256 alongside (tee to openssl dgst), and
#           umoci raw unpack (a one-layer OCI image holding L.tar uncompressed)
#   pack    strata layer pack DIR -o -         vs  tar -cf - -C DIR . | openssl dgst -sha256
#           (both stream and hash; `-o FILE`, which also fsyncs the file, is shown too)
#   repack  strata layer repack DIR --recipe R -o -   vs  cat L.tar (the floor)
# plus the peak RSS (/usr/bin/time) of strata on the big-file layer and on a generated
# 4 GiB layer (one file, streamed from a pipe: no 4 GiB input file); writes the tables
# to bench/results-YYYY-MM-DD.md. Then, appending to the same file: bench/registry.sh
# (push and pull of the corpus image over loopback against skopeo), bench/wclayer.sh
# (Windows layers against the Linux path), bench/store.sh (the store) and
# bench/image.sh (strata copy against skopeo copy). Needs root (owners, devices).
set -euo pipefail
PROG=bench
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
BENCH_WORK=${BENCH_WORK:-/var/tmp/strata-bench}
TMPFS=${TMPFS:-/dev/shm}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[ "$(id -u)" -eq 0 ] || die "run as root: the layers hold foreign owners and device nodes"

need_packages umoci:umoci tar:tar gzip:gzip openssl:openssl /usr/bin/time:time python3:python3
ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata

LAYERS=(1 3 4)
declare -A LAYER_NAME=([1]="1 base rootfs" [3]="3 small files" [4]="4 big file")
mkdir -p "$BENCH_WORK/layers"
SCRATCH_T=$TMPFS/strata-bench.$$
SCRATCH_D=$BENCH_WORK/disk.$$
cleanup() { rm -rf -- "$SCRATCH_T" "$SCRATCH_D"; }
trap cleanup EXIT
mkdir -p "$SCRATCH_T" "$SCRATCH_D"
declare -A FS_DIR=([tmpfs]=$SCRATCH_T [disk]=$SCRATCH_D)
read -r -a FSES <<<"${FSES:-tmpfs disk}"
UNPACK_TARGET=1.2
PACK_TARGET=1.2
LOAD_BEFORE=$(loadavg)
ERR=$BENCH_WORK/last-error.log

# --- inputs -------------------------------------------------------------------------
# prepare_layer I: plain_layer I, and BENCH_WORK/layers/umoci-L<I>, a one-layer OCI
# image holding it uncompressed.
prepare_layer() {
  local i=$1 diff tar img
  tar=$(plain_layer "$i")
  diff=$(cat "$tar.diffid")
  img=$BENCH_WORK/layers/umoci-L$i
  if [ ! -f "$img/.ready" ]; then
    say "layer $i: one-layer OCI image for umoci (uncompressed layer)"
    rm -rf -- "$img"
    umoci init --layout "$img" >/dev/null
    umoci new --image "$img:t" >/dev/null
    umoci raw add-layer --image "$img:t" "$tar" >/dev/null 2>&1
    # umoci stores the layer gzipped: point the manifest at the plain tar instead, so
    # that umoci is timed on tar extraction as the others are, not on gunzip.
    python3 - "$img" "$tar" "${diff#sha256:}" <<'PY'
import hashlib, json, os, sys
img, tar, diff = sys.argv[1:]
blobs = os.path.join(img, "blobs", "sha256")
index = json.load(open(os.path.join(img, "index.json")))
desc = index["manifests"][0]
old_manifest = desc["digest"].split(":")[1]
manifest = json.load(open(os.path.join(blobs, old_manifest)))
old_layer = manifest["layers"][0]["digest"].split(":")[1]
os.link(tar, os.path.join(blobs, diff))
manifest["layers"][0] = {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                         "digest": "sha256:" + diff, "size": os.path.getsize(tar)}
body = json.dumps(manifest, separators=(",", ":")).encode()
digest = hashlib.sha256(body).hexdigest()
open(os.path.join(blobs, digest), "wb").write(body)
desc["digest"], desc["size"] = "sha256:" + digest, len(body)
json.dump(index, open(os.path.join(img, "index.json"), "w"))
for d in {old_layer, old_manifest} - {diff, digest}:
    os.remove(os.path.join(blobs, d))
PY
    touch "$img/.ready"
  fi
}

# Each takes: LAYER_TAR DEST (or TREE OUT) [IMAGE] [RECIPE]
fresh_dir() { rm -rf -- "$2" && mkdir -p "$2"; }
no_file() { rm -f -- "$2"; }
strata_unpack() { "$STRATA" -q layer unpack -i "$1" "$2"; }
gnutar_unpack() { tar -xpf "$1" -C "$2"; }
umoci_unpack() { umoci raw unpack --image "$3:t" "$2"; }
# GNU tar that also computes the diffID, as Strata does: tee into openssl through a fifo.
gnutar_sha_unpack() {
  local fifo=$BENCH_WORK/sha.fifo pid
  rm -f -- "$fifo" && mkfifo "$fifo"
  openssl dgst -sha256 <"$fifo" >/dev/null &
  pid=$!
  tee "$fifo" <"$1" | tar -xpf - -C "$2"
  wait "$pid"
}
strata_pack_stream() { "$STRATA" -q layer pack "$1" -o - >/dev/null; }
strata_pack_file() { "$STRATA" -q layer pack "$1" -o "$2"; }
tar_openssl_pack() { tar -cf - -C "$1" . | openssl dgst -sha256 >/dev/null; }
strata_repack() { "$STRATA" -q layer repack "$1" --recipe "$4" -o - >/dev/null; }
cat_floor() { cat "$3" >/dev/null; }

# --- the race -----------------------------------------------------------------------
for i in "${LAYERS[@]}"; do prepare_layer "$i"; done

declare -A BYTES ENTRIES
for i in "${LAYERS[@]}"; do
  BYTES[$i]=$(stat -c %s "$BENCH_WORK/layers/L$i.tar")
  ENTRIES[$i]=$(tar -tf "$BENCH_WORK/layers/L$i.tar" | wc -l)
done

unpack_rows=() pack_rows=() repack_rows=()
for i in "${LAYERS[@]}"; do
  L=$BENCH_WORK/layers/L$i.tar
  IMG=$BENCH_WORK/layers/umoci-L$i
  B=${BYTES[$i]}
  for fs in "${FSES[@]}"; do
    D=${FS_DIR[$fs]}
    say "layer $i on $fs: unpack race (strata and GNU tar in turn) x$N, then GNU tar + sha256 and umoci"
    read -r s g rg sc gc < <(race fresh_dir strata_unpack gnutar_unpack "$L" "$D/dst" "$IMG")
    gh=$(measure fresh_dir gnutar_sha_unpack "$L" "$D/dst" "$IMG")
    u=$(measure fresh_dir umoci_unpack "$L" "$D/dst" "$IMG")
    ru=$(ratio "$u" "$s")
    unpack_rows+=("| ${LAYER_NAME[$i]} | $fs | $(cell "$s" "$B") | $(cell "$g" "$B") | ${rg}x ($(verdict "$rg" "$UNPACK_TARGET")) | $sc s / $gc s | $(cell "$gh" "$B") | $(ratio "$gh" "$s")x | $(cell "$u" "$B") | ${ru}x ($(verdict "$ru" 2.0)) |")
    rm -rf -- "$D/dst"

    # The tree to pack and repack: unpacked once, with a recipe.
    T=$D/tree-L$i
    R=$D/L$i.recipe
    rm -rf -- "$T" "$R"
    "$STRATA" -q layer unpack -i "$L" "$T" --recipe "$R"
    say "layer $i on $fs: pack race (strata stream and tar|openssl in turn) x$N, strata file, repack"
    read -r ps po rs psc poc < <(race nothing strata_pack_stream tar_openssl_pack "$T" "$D/out.tar")
    pf=$(measure no_file strata_pack_file "$T" "$D/out.tar")
    rf=$(ratio "$po" "$pf")
    pack_rows+=("| ${LAYER_NAME[$i]} | $fs | $(cell "$ps" "$B") | $(cell "$pf" "$B") | $(cell "$po" "$B") | ${rs}x ($(verdict "$rs" "$PACK_TARGET")) | ${rf}x | $psc s / $poc s |")
    rp=$(measure nothing strata_repack "$T" "$D/out.tar" "$L" "$R")
    ct=$(measure nothing cat_floor "$T" "$D/out.tar" "$L" "$R")
    repack_rows+=("| ${LAYER_NAME[$i]} | $fs | $(cell "$rp" "$B") | $(cell "$ct" "$B") | $(ratio "$rp" "$ct")x |")
    rm -f -- "$D/out.tar"
    [ "$i" = 4 ] || rm -rf -- "$T" "$R"
  done
done

# Peak RSS on the big-file layer (tmpfs).
say "peak RSS on layer 4"
L4=$BENCH_WORK/layers/L4.tar
rss() { # rss CMD...: peak RSS in MiB
  /usr/bin/time -f %M -o "$BENCH_WORK/rss" "$@" >/dev/null 2>"$ERR" || { tail "$ERR" >&2; die "failed: $*"; }
  awk '{ printf "%.1f", $1 / 1024 }' "$BENCH_WORK/rss"
}
fresh_dir x "$SCRATCH_T/dst"
rss_unpack=$(rss "$STRATA" -q layer unpack -i "$L4" "$SCRATCH_T/dst")
fresh_dir x "$SCRATCH_T/dst"
rss_tar=$(rss tar -xpf "$L4" -C "$SCRATCH_T/dst")
fresh_dir x "$SCRATCH_T/dst"
rss_umoci=$(rss umoci raw unpack --image "$BENCH_WORK/layers/umoci-L4:t" "$SCRATCH_T/dst")
rss_pack=$(rss "$STRATA" -q layer pack "$SCRATCH_T/tree-L4" -o "$SCRATCH_T/out.tar")
rss_repack=$(rss "$STRATA" -q layer repack "$SCRATCH_T/tree-L4" --recipe "$SCRATCH_T/L4.recipe" -o "$SCRATCH_T/out2.tar")
cmp -s "$SCRATCH_T/out2.tar" "$L4" || die "repack of layer 4 is not bit-exact"
rm -f -- "$SCRATCH_T/out.tar" "$SCRATCH_T/out2.tar"

# Peak RSS on a 4 GiB layer: one file, generated into a pipe (no 4 GiB input file), then
# packed again to /dev/null. Flat memory means the same few MiB as for layer 4.
say "peak RSS on a generated 4 GiB layer"
big_layer() {
  python3 - <<'PY'
import sys, tarfile
size = 4 << 30
info = tarfile.TarInfo("big/four-gib")
info.size, info.mode, info.mtime = size, 0o644, 1700000000
out = sys.stdout.buffer
out.write(info.tobuf(tarfile.PAX_FORMAT))
chunk = bytes(range(256)) * 4096
left = size
while left:
    n = min(left, len(chunk))
    out.write(chunk[:n])
    left -= n
out.write(b"\0" * 1024)
PY
}
fresh_dir x "$SCRATCH_T/big"
big_layer | rss "$STRATA" -q layer unpack -i - "$SCRATCH_T/big" >"$BENCH_WORK/rss-big-unpack"
rss_big_unpack=$(cat "$BENCH_WORK/rss-big-unpack")
[ "$(stat -c %s "$SCRATCH_T/big/big/four-gib")" = $((4 << 30)) ] || die "the 4 GiB layer did not unpack whole"
rss_big_pack=$(rss "$STRATA" -q layer pack "$SCRATCH_T/big" -o -)
rm -rf -- "$SCRATCH_T/big"

LOAD_AFTER=$(loadavg)

# --- report -------------------------------------------------------------------------
date_utc=$(date -u +%F)
results=${RESULTS:-$ROOT/bench/results-$date_utc.md}
export RESULTS=$results
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)
{
  echo "# Strata benchmark race, $date_utc"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), Linux $(uname -r)."
  echo "tmpfs: $TMPFS ($(stat -f -c %T "$TMPFS")); disk: $BENCH_WORK ($(stat -f -c %T "$BENCH_WORK"))."
  echo "Strata $("$STRATA" --version | cut -d' ' -f2) at $rev$dirty (release build); $(tar --version | head -n1); umoci $(umoci --version | cut -d' ' -f3); $(openssl version | cut -d' ' -f1-2)."
  echo "Corpus: $CORPUS (full), layers of oci:corpus gunzipped to plain tars:"
  for i in "${LAYERS[@]}"; do
    echo "layer ${LAYER_NAME[$i]}: $(awk -v b="${BYTES[$i]}" 'BEGIN { printf "%.1f MB", b / 1e6 }'), ${ENTRIES[$i]} entries."
  done
  echo
  echo "Load average (1, 5, 15 min) before the race: $LOAD_BEFORE; after: $LOAD_AFTER. Other work on the machine moves wall times; the alternating races keep the ratios."
  echo
  echo "Strata against its peer (the \"vs\" columns): the two run in turn, run by run, the order alternating within each pair, after one warm-up each; $N pairs. Times are the medians of each tool; the ratio is the median of the $N per-pair ratios (peer time / Strata time: above 1 means Strata is faster). CPU is the median user + system time of each (all threads and children), which the machine's load moves much less than wall time."
  echo "Other columns: median of $N runs after one warm-up. Inputs in the page cache; each destination removed and \`sync\`ed before a run, untimed. MB/s is layer tar bytes (10^6) per second."
  echo
  echo "## Unpack (targets: >= $UNPACK_TARGET x GNU tar, >= 2x umoci)"
  echo
  echo "GNU tar is \`tar -xpf\` as root (owners and modes kept; no xattrs without --xattrs, no whiteouts, no digest)."
  echo "Strata also computes the diffID, applies xattrs and whiteouts, and resolves every path in the root with its Landlock sandbox on."
  echo "\"tar + sha256\" is GNU tar that also computes the diffID: \`tee FIFO < L.tar | tar -xpf -\` with \`openssl dgst -sha256 < FIFO\` (no target; it shows the cost of hashing)."
  echo "umoci is \`umoci raw unpack\` of a one-layer image whose layer is stored uncompressed."
  echo
  echo "| layer | fs | strata unpack | GNU tar -xpf | vs tar | CPU strata / tar | tar + sha256 | vs tar + sha256 | umoci raw unpack | vs umoci |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${unpack_rows[@]}"
  echo
  echo "## Pack (target: >= $PACK_TARGET x tar | openssl)"
  echo
  echo "Both sides walk the tree, write a tar stream and hash it: \`strata layer pack DIR -o -\` (to /dev/null; sorted, deterministic, PAX with nanosecond times and xattrs)"
  echo "against \`tar -cf - -C DIR . | openssl dgst -sha256\`. \`-o FILE\` writes the layer next to the tree and fsyncs it."
  echo
  echo "| layer | fs | strata pack -o - | strata pack -o FILE | tar -cf - \\| openssl dgst | vs tar\\|openssl (stream) | (file) | CPU strata / tar\\|openssl |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${pack_rows[@]}"
  echo
  echo "## Repack (bit-exact rebuild from a recipe; no target)"
  echo
  echo "\`strata layer repack DIR --recipe R -o -\` (reads the tree, checks CRC-64 and the diffID) against \`cat L.tar\`, the floor of any rebuild."
  echo
  echo "| layer | fs (tree) | strata repack | cat L.tar | repack / cat |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${repack_rows[@]}"
  echo
  echo "## Peak RSS, layer 4 (big file) on tmpfs"
  echo
  echo "| command | peak RSS |"
  echo "| --- | --- |"
  echo "| strata layer unpack | $rss_unpack MiB |"
  echo "| strata layer pack -o FILE | $rss_pack MiB |"
  echo "| strata layer repack -o FILE | $rss_repack MiB |"
  echo "| tar -xpf (reference) | $rss_tar MiB |"
  echo "| umoci raw unpack (reference) | $rss_umoci MiB |"
  echo
  echo "## Peak RSS, a 4 GiB layer (target: flat, under 64 MiB)"
  echo
  echo "One 4 GiB file, the layer generated into a pipe (\`strata layer unpack -i -\`), then the tree packed to /dev/null."
  echo
  echo "| command | peak RSS |"
  echo "| --- | --- |"
  echo "| strata layer unpack -i - (4 GiB) | $rss_big_unpack MiB ($(awk -v r="$rss_big_unpack" 'BEGIN { print (r + 0 < 64) ? "yes" : "**no**" }')) |"
  echo "| strata layer pack -o - (4 GiB) | $rss_big_pack MiB ($(awk -v r="$rss_big_pack" 'BEGIN { print (r + 0 < 64) ? "yes" : "**no**" }')) |"
} >"$results.tmp"
mv "$results.tmp" "$results"

# Loading an image into an overlay store: layers applied in parallel, by --jobs.
STRATA=$STRATA N=$N TMPFS=$TMPFS CORPUS=$CORPUS BENCH_WORK=$BENCH_WORK "$ROOT/bench/load.sh" | tee -a "$results"
if [ "${ONLY:-}" = layers ]; then
  say "written to $results (ONLY=layers: registry, wclayer, store and image benches skipped)"
  exit 0
fi

# The registry race (push and pull against skopeo), appended to the same results.
say "registry race: bench/registry.sh"
N=$N CORPUS=$CORPUS TMPFS=$TMPFS bash "$ROOT/bench/registry.sh" >/dev/null
{ echo; cat "$ROOT/bench/results-registry-$date_utc.md"; } >>"$results"
cat "$results"
say "written to $results"

# Windows layers: import/export against the Linux path (appends to the same file).
N=$N TMPFS=$TMPFS "$ROOT/bench/wclayer.sh"

# The store: apply vs unpack, changes, mount latency, ls (appends to the same file).
STRATA=$STRATA N=$N TMPFS=$TMPFS CORPUS=$CORPUS BENCH_WORK=$BENCH_WORK "$ROOT/bench/store.sh" | tee -a "$results"

# The image-copy race (strata copy against skopeo copy), with its own table.
STRATA=$STRATA N=$N TMPFS=$TMPFS CORPUS=$CORPUS "$ROOT/bench/image.sh"
