#!/usr/bin/env bash
# The registry race: `strata copy` against `skopeo copy`, and `strata pull`/`push`
# through the store against `podman pull`/`push` through its own, pushing and pulling
# the full corpus image over loopback, in one run.
#
# Usage: bench/registry.sh            (bench/run.sh calls it after its own race)
# Environment:
#   CORPUS=DIR      full test corpus (default /var/tmp/strata-corpus-full; built with
#                   shared/testdata/make-corpus.sh if absent, ~2.5 min)
#   N=5             timed runs per measurement (median reported; one warm-up first)
#   TMPFS=DIR       tmpfs scratch (default /dev/shm): the source layout, the registry's
#                   storage and the pulled layouts all live there
#
# The image is oci:CORPUS/oci:corpus (5 gzip layers and a config, ~295 MB of blobs),
# copied to tmpfs first, and its docker-archive (plain layers). Debian's docker-registry
# (distribution 2.8) serves plain HTTP on a free 127.0.0.1 port
# (shared/testdata/registry.sh). Each timed run:
#   push       into a fresh, empty registry (started untimed):
#                strata copy oci:LAYOUT:corpus docker://127.0.0.1:PORT/bench/corpus:1
#              vs skopeo copy --dest-tls-verify=false oci:LAYOUT:corpus docker://...
#   push gzip  the same from the docker-archive: both gzip every layer on the way
#   pull       from a registry holding the image, into a fresh layout on tmpfs:
#                strata copy docker://... oci:DIR:corpus
#              vs skopeo copy --src-tls-verify=false docker://... oci:DIR:corpus
#   floor      curl -T of the largest blob alone into a fresh registry: what the
#              registry itself needs (it hashes every byte it stores), a bound of any push
#   store pull strata pull into a fresh store (overlay, on tmpfs: every layer verified and
#              unpacked, its gzip blob kept) vs podman pull into fresh overlay storage
#   store push from a store that loaded the docker-archive (plain layers), into a fresh
#              registry: the first push gzips every layer and keeps the blobs (a fresh
#              store each run, loaded untimed); a later one sends the kept blobs; vs
#              podman push from its storage (it gzips every layer on every push)
#   verified   push and pull again with `strata copy --verify-diff-ids`, which also
#              checks every gzip layer against its diffID (decompressing and hashing it
#              alongside, on other threads); skopeo has no such check, and on 2 cores
#              that work competes with the registry, which runs on the same machine
# Both verify every blob digest (strata's store pull and push check diffIDs too, as
# they unpack or compress the layers). Both fsync what they write (free on tmpfs). Reported: median wall time, MB/s
# of blob bytes, the client's own CPU time (user+sys, the registry's excluded), ratio =
# skopeo time / strata time (target >= 1.5x), and strata's peak RSS.
# Writes the table to bench/results-registry-YYYY-MM-DD.md and prints it.
set -euo pipefail
PROG=bench-registry
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
TMPFS=${TMPFS:-/dev/shm}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[ "$(id -u)" -eq 0 ] || die "run as root (the corpus build and docker-registry install need it)"

need_packages skopeo:skopeo podman:podman docker-registry:docker-registry python3:python3 curl:curl /usr/bin/time:time
ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata
REGISTRY_SH=$SHARED/testdata/registry.sh
[ -f "$REGISTRY_SH" ] || die "no $REGISTRY_SH: shared/ must sit beside the repository (or set SHARED=DIR)"

WORK=$TMPFS/strata-bench-registry.$$
cleanup() {
  bash "$REGISTRY_SH" stop "$WORK/reg" >/dev/null 2>&1 || true
  rm -rf -- "$WORK" "$TMPFS/pr$$-"*
}
trap cleanup EXIT
mkdir -p "$WORK"
SRC=$WORK/src
cp -a "$CORPUS/oci" "$SRC"
ARCHIVE=$WORK/corpus.docker-archive.tar
cp "$CORPUS/corpus.docker-archive.tar" "$ARCHIVE"
BYTES=$(python3 - "$SRC" <<'PY'
import json, os, sys
root = sys.argv[1]
index = json.load(open(os.path.join(root, "index.json")))
desc = next(d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == "corpus")
m = json.load(open(os.path.join(root, "blobs/sha256", desc["digest"].split(":")[1])))
print(sum(d["size"] for d in [m["config"]] + m["layers"]))
PY
)
LARGEST=$(python3 - "$SRC" <<'PY'
import json, os, sys
root = sys.argv[1]
index = json.load(open(os.path.join(root, "index.json")))
desc = next(d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == "corpus")
m = json.load(open(os.path.join(root, "blobs/sha256", desc["digest"].split(":")[1])))
big = max([m["config"]] + m["layers"], key=lambda d: d["size"])
print(big["digest"], big["size"])
PY
)
LARGEST_SIZE=${LARGEST#* }
LARGEST=${LARGEST% *}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REF=127.0.0.1:$PORT/bench/corpus:1
ERR=$WORK/last-error.log

registry_up() { bash "$REGISTRY_SH" start "$WORK/reg" "$PORT" >/dev/null 2>"$ERR" || { cat "$ERR" >&2; die "registry start failed"; }; }
registry_down() { bash "$REGISTRY_SH" stop "$WORK/reg" >/dev/null 2>&1 || true; rm -rf -- "$WORK/reg"; }
fresh_registry() { registry_down; registry_up; }
fresh_dest() { rm -rf -- "$WORK/dst"; }

ours_push() { "$STRATA" -q copy "oci:$SRC:corpus" "docker://$REF"; }
skopeo_push() { skopeo copy -q --dest-tls-verify=false "oci:$SRC:corpus" "docker://$REF"; }
ours_push_gzip() { "$STRATA" -q copy "docker-archive:$ARCHIVE" "docker://$REF"; }
skopeo_push_gzip() { skopeo copy -q --dest-tls-verify=false "docker-archive:$ARCHIVE" "docker://$REF"; }
ours_pull() { "$STRATA" -q copy "docker://$REF" "oci:$WORK/dst:corpus"; }
ours_push_verified() { "$STRATA" -q copy --verify-diff-ids "oci:$SRC:corpus" "docker://$REF"; }
ours_pull_verified() { "$STRATA" -q copy --verify-diff-ids "docker://$REF" "oci:$WORK/dst:corpus"; }
# The registry's own floor: the largest blob alone, one streamed PUT by curl.
curl_largest_push() {
  local loc
  loc=$(curl -fsS -i -X POST "http://127.0.0.1:$PORT/v2/bench/floor/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  curl -fsS -o /dev/null -T "$SRC/blobs/sha256/${LARGEST#sha256:}" -H 'Content-Type: application/octet-stream' "$loc&digest=$LARGEST"
}
skopeo_pull() { skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/dst:corpus"; }
# Through stores: strata's (overlay) and podman's (overlay too, its own root on tmpfs).
# (podman refuses a runroot longer than 50 characters: those live in short $TMPFS/pr* names.)
podman_in() { local dir=$1; shift; podman --root "$dir/root" --runroot "$TMPFS/pr$$-${dir##*/}" --storage-driver overlay --cgroup-manager cgroupfs --events-backend none "$@"; }
fresh_stores() { rm -rf -- "$WORK/store" "$WORK/podman-pull"; }
ours_store_pull() { "$STRATA" -q --root "$WORK/store" pull --tls-verify=false "$REF"; }
podman_store_pull() { podman_in "$WORK/podman-pull" pull -q --tls-verify=false "$REF"; }
# A registry to push into, and a store that holds the image as docker load left it.
fresh_registry_and_store() {
  fresh_registry
  rm -rf -- "$WORK/push-store"
  "$STRATA" -q --root "$WORK/push-store" load -i "$ARCHIVE"
}
ours_store_push() { "$STRATA" -q --root "$WORK/push-store" push --tls-verify=false strata/corpus:1 "$REF"; }
podman_store_push() { podman_in "$WORK/podman-push" push -q --tls-verify=false docker.io/strata/corpus:1 "docker://$REF"; }

TIMEFORMAT='%R %U %S'
# measure_cpu CLEAN RUN: one warm-up and N timed runs of RUN, each after CLEAN and a
# sync (untimed); prints "median-wall-s median-cpu-s" (cpu: the command's user+sys).
measure_cpu() {
  local clean=$1 run=$2 i
  local -a walls=() cpus=()
  for ((i = 0; i <= N; i++)); do
    "$clean"
    sync
    if ! { time "$run" >/dev/null 2>"$ERR"; } 2>"$WORK/time"; then
      tail -n 20 "$ERR" >&2
      die "failed: $run"
    fi
    [ "$i" -eq 0 ] && continue
    read -r wall user sys <"$WORK/time"
    walls+=("$wall")
    cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')")
  done
  printf '%s %s\n' "$(median "${walls[@]}")" "$(median "${cpus[@]}")"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f", m }'; }

# Same blobs in, same blobs out: the pulled layouts hold the source's blob files.
check_pulled() {
  local blob
  for blob in "$SRC"/blobs/sha256/*; do
    [ -e "$WORK/dst/blobs/sha256/$(basename "$blob")" ] || continue
    cmp -s "$blob" "$WORK/dst/blobs/sha256/$(basename "$blob")" || die "$1 pulled a blob that differs: $(basename "$blob")"
  done
  [ "$(find "$WORK/dst/blobs/sha256" -type f | wc -l)" -ge 7 ] || die "$1 pulled too few blobs"
}

# rss CLEAN CMD...: the peak RSS in MiB of one run of CMD after CLEAN.
rss() {
  "$1"
  shift
  /usr/bin/time -f %M -o "$WORK/rss" "$@" >/dev/null 2>"$ERR" || { tail "$ERR" >&2; die "failed: $*"; }
  awk '{ printf "%.1f", $1 / 1024 }' "$WORK/rss"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "push: strata copy and skopeo copy into a fresh registry, x$N each"
read -r push_ours push_ours_cpu < <(measure_cpu fresh_registry ours_push)
read -r push_skopeo push_skopeo_cpu < <(measure_cpu fresh_registry skopeo_push)
read -r push_floor _ < <(measure_cpu fresh_registry curl_largest_push)
read -r vpush_ours vpush_ours_cpu < <(measure_cpu fresh_registry ours_push_verified)
rss_push=$(rss fresh_registry "$STRATA" -q copy "oci:$SRC:corpus" "docker://$REF")
say "push from the docker-archive (layers gzipped on the way), x$N each"
read -r gz_ours gz_ours_cpu < <(measure_cpu fresh_registry ours_push_gzip)
read -r gz_skopeo gz_skopeo_cpu < <(measure_cpu fresh_registry skopeo_push_gzip)

say "pull: strata copy and skopeo copy into a fresh layout, x$N each"
fresh_registry
skopeo_push >/dev/null 2>"$ERR" || { cat "$ERR" >&2; die "seeding the registry failed"; }
read -r pull_ours pull_ours_cpu < <(measure_cpu fresh_dest ours_pull)
check_pulled strata
read -r vpull_ours vpull_ours_cpu < <(measure_cpu fresh_dest ours_pull_verified)
check_pulled strata
rss_pull=$(rss fresh_dest "$STRATA" -q copy "docker://$REF" "oci:$WORK/dst:corpus")
read -r pull_skopeo pull_skopeo_cpu < <(measure_cpu fresh_dest skopeo_pull)
check_pulled skopeo

say "pull into a store: strata pull and podman pull, x$N each"
read -r spull_ours spull_ours_cpu < <(measure_cpu fresh_stores ours_store_pull)
"$STRATA" --root "$WORK/store" fsck >/dev/null || die "the store strata pulled into fails fsck"
rss_store_pull=$(rss fresh_stores "$STRATA" -q --root "$WORK/store" pull --tls-verify=false "$REF")
read -r spull_podman spull_podman_cpu < <(measure_cpu fresh_stores podman_store_pull)
fresh_stores

say "push from a store: strata push (first and later) and podman push, x$N each"
podman_in "$WORK/podman-push" load -q -i "$ARCHIVE" >/dev/null
read -r spush_first spush_first_cpu < <(measure_cpu fresh_registry_and_store ours_store_push)
read -r spush_kept spush_kept_cpu < <(measure_cpu fresh_registry ours_store_push)
rss_store_push=$(rss fresh_registry_and_store "$STRATA" -q --root "$WORK/push-store" push --tls-verify=false strata/corpus:1 "$REF")
read -r spush_podman spush_podman_cpu < <(measure_cpu fresh_registry podman_store_push)
registry_down
rm -rf -- "$WORK/podman-push" "$WORK/push-store"

rp=$(ratio "$push_skopeo" "$push_ours")
rg=$(ratio "$gz_skopeo" "$gz_ours")
rl=$(ratio "$pull_skopeo" "$pull_ours")
rvp=$(ratio "$push_skopeo" "$vpush_ours")
rvl=$(ratio "$pull_skopeo" "$vpull_ours")
rsp=$(ratio "$spull_podman" "$spull_ours")
rsf=$(ratio "$spush_podman" "$spush_first")
rsk=$(ratio "$spush_podman" "$spush_kept")
TARBYTES=$(stat -c %s "$ARCHIVE")
date_utc=$(date -u +%F)
results=$ROOT/bench/results-registry-$date_utc.md
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
{
  echo "## Registry push and pull (target: >= 1.5x skopeo)"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), Linux $(uname -r); strata at $rev."
  echo "Image: oci:corpus of $CORPUS, 7 blobs, $(awk -v b="$BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }'), copied to $TMPFS; registry: docker-registry $(docker-registry --version | awk '{ print $3 }') on 127.0.0.1, storage on tmpfs; $(skopeo --version)."
  echo "Median of $N runs after one warm-up. Push goes into a fresh registry each run; pull into a fresh layout. CPU is the client's user+sys (the registry's not counted)."
  echo "Load average before / after the race: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times; CPU times much less)."
  echo "strata is \`strata copy\` ($("$STRATA" --version | cut -d' ' -f2), release build; layers on as many threads as cores, default upload policy: one PUT up to 32 MiB, 32 MiB PATCH chunks above); skopeo copies up to 6 blobs at once."
  echo "Both verify blob digests. With \`--verify-diff-ids\` strata also verifies every diffID (gunzip and sha256 of each layer's tar alongside the transfer), which skopeo cannot: on this 2-core machine that CPU competes with the registry's own."
  echo
  echo "| copy | strata | skopeo | ratio (skopeo / strata) | strata CPU | skopeo CPU |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| push (oci -> docker://) | $push_ours s ($(mbps "$BYTES" "$push_ours") MB/s) | $push_skopeo s ($(mbps "$BYTES" "$push_skopeo") MB/s) | ${rp}x ($(verdict "$rp" 1.5)) | $push_ours_cpu s | $push_skopeo_cpu s |"
  echo "| push floor: \`curl -T\` of the largest blob alone ($(awk -v b="$LARGEST_SIZE" 'BEGIN { printf "%.0f MB", b / 1e6 }')) | $push_floor s | | | | |"
  echo "| push --verify-diff-ids | $vpush_ours s ($(mbps "$BYTES" "$vpush_ours") MB/s) | $push_skopeo s | ${rvp}x | $vpush_ours_cpu s | $push_skopeo_cpu s |"
  echo "| push gzip (docker-archive -> docker://, MB/s of tar) | $gz_ours s ($(mbps "$TARBYTES" "$gz_ours") MB/s) | $gz_skopeo s ($(mbps "$TARBYTES" "$gz_skopeo") MB/s) | ${rg}x ($(verdict "$rg" 1.5)) | $gz_ours_cpu s | $gz_skopeo_cpu s |"
  echo "| pull (docker:// -> oci) | $pull_ours s ($(mbps "$BYTES" "$pull_ours") MB/s) | $pull_skopeo s ($(mbps "$BYTES" "$pull_skopeo") MB/s) | ${rl}x ($(verdict "$rl" 1.5)) | $pull_ours_cpu s | $pull_skopeo_cpu s |"
  echo "| pull --verify-diff-ids | $vpull_ours s ($(mbps "$BYTES" "$vpull_ours") MB/s) | $pull_skopeo s | ${rvl}x | $vpull_ours_cpu s | $pull_skopeo_cpu s |"
  echo
  echo "Peak RSS of strata: push $rss_push MiB, pull $rss_pull MiB."
  echo
  echo "### Through the store: strata pull / push against podman (target: >= 1.5x)"
  echo
  echo "\`strata pull\` verifies and unpacks every layer into a fresh overlay store on tmpfs as it downloads, keeping the gzip blobs; \`podman pull\` into fresh overlay storage on tmpfs. Pushes go into a fresh registry from a store holding the image as \`load\` left it (plain layers): strata's first push gzips each layer once and keeps the blob (a fresh store each run, loaded untimed); a later push sends the kept blobs; podman gzips every layer on every push. $(podman --version)."
  echo
  echo "| job | strata | podman | ratio (podman / strata) | strata CPU | podman CPU |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| pull into a store | $spull_ours s ($(mbps "$BYTES" "$spull_ours") MB/s) | $spull_podman s ($(mbps "$BYTES" "$spull_podman") MB/s) | ${rsp}x ($(verdict "$rsp" 1.5)) | $spull_ours_cpu s | $spull_podman_cpu s |"
  echo "| push from a store, first (gzip, MB/s of tar) | $spush_first s ($(mbps "$TARBYTES" "$spush_first") MB/s) | $spush_podman s ($(mbps "$TARBYTES" "$spush_podman") MB/s) | ${rsf}x ($(verdict "$rsf" 1.5)) | $spush_first_cpu s | $spush_podman_cpu s |"
  echo "| push from a store, blobs kept | $spush_kept s ($(mbps "$BYTES" "$spush_kept") MB/s) | $spush_podman s | ${rsk}x ($(verdict "$rsk" 1.5)) | $spush_kept_cpu s | $spush_podman_cpu s |"
  echo
  echo "Peak RSS of strata: pull into a store $rss_store_pull MiB, first push from a store $rss_store_push MiB."
} >"$results.tmp"
mv "$results.tmp" "$results"
cat "$results"
say "written to $results"
