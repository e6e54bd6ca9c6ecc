#!/usr/bin/env bash
# The edit race: `strata append` and `strata mutate` against `umoci insert` and
# `umoci config`, on an OCI layout on tmpfs.
#
# Usage: bench/edit.sh
# Environment:
#   CORPUS=DIR    test corpus whose oci:corpus is the base image (default
#                 /var/tmp/strata-corpus-full, built with shared/testdata/make-corpus.sh
#                 if absent; CORPUS=/path/to/small-corpus races on the small one)
#   N=5           timed pairs per race (medians reported; one warm-up pair first)
#   MB=100        size of the directory appended (files of 4 KiB..1 MiB, half of them
#                 compressible text, half random)
#   TMPFS=DIR     tmpfs scratch (default /dev/shm)
#
# Each run starts from a fresh copy of the layout (untimed, then sync), and both tools
# write into the layout in place, gzip layers:
#   append  strata append oci:L:base oci:L:out --layer DIR
#           umoci insert --image L:base --tag out DIR /
#   mutate  strata mutate oci:L:base oci:L:out --env --label --workdir --user
#           umoci config --image L:base --tag out (the same four)
# The runs alternate, pair by pair (bench/lib.sh `race`), so the machine's load moves
# both alike. Prints a markdown table of median wall and CPU times, the ratio (umoci /
# strata: above 1, Strata is faster) and peak RSS, and writes it to
# bench/results-edit-YYYY-MM-DD.md.
set -euo pipefail
PROG=bench-edit
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-/var/tmp/strata-corpus-full}
N=${N:-5}
MB=${MB:-100}
TMPFS=${TMPFS:-/dev/shm}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[[ $MB =~ ^[1-9][0-9]*$ ]] || die "MB must be a positive number, not '$MB'"

need_packages umoci:umoci python3:python3 /usr/bin/time:time
[ -f "$CORPUS/oci/index.json" ] || ensure_corpus full "$CORPUS"
[ -n "${STRATA:-}" ] || build_strata

LOAD_BEFORE=$(loadavg)
W=$TMPFS/strata-edit-bench.$$
trap 'rm -rf -- "$W"' EXIT
mkdir -p "$W/tmp"
ERR=$W/last-error.log
export STRATA_TMPDIR=$W/tmp # strata's staging (the packed layer) on tmpfs too
say "copying oci:corpus to $W/pristine and making a $MB MB directory (untimed)"
"$STRATA" -q copy "oci:$CORPUS/oci:corpus" "oci:$W/pristine:base"
python3 - "$W/app" "$MB" <<'PY'
import os, random, sys
root, mb = sys.argv[1], int(sys.argv[2])
r = random.Random(20261202)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(4096)]
left, i = mb << 20, 0
while left > 0:
    d = os.path.join(root, "usr/share/app/d%02d" % (i % 32))
    os.makedirs(d, exist_ok=True)
    size = min(r.randint(4096, 1 << 20), left)
    if i % 2:
        data = r.randbytes(size)
    else:
        data = b" ".join(r.choice(words) for _ in range(size // 5))[:size]
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(data)
    left -= size
    i += 1
PY
BASE_BYTES=$(du -sb "$W/pristine" | cut -f1)
APP_BYTES=$(du -sb "$W/app" | cut -f1)

fresh() { rm -rf -- "$W/L"; cp -r "$W/pristine" "$W/L"; }
strata_append() { "$STRATA" -q append "oci:$W/L:base" "oci:$W/L:out" --layer "$W/app"; }
umoci_insert() { umoci insert --image "$W/L:base" --tag out "$W/app" /; }
strata_mutate() {
  "$STRATA" -q mutate "oci:$W/L:base" "oci:$W/L:out" --env K=V --label org.example=x \
    --workdir /srv --user 1000
}
umoci_config() {
  umoci config --image "$W/L:base" --tag out --config.env K=V \
    --config.label org.example=x --config.workingdir /srv --config.user 1000
}

# Both made what they were asked: one more layer (append), or none (mutate).
manifest_out() { "$STRATA" manifest "oci:$W/L:out"; }
layers_of() { manifest_out | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["layers"]))'; }
top_size() { manifest_out | python3 -c 'import json, sys; print(json.load(sys.stdin)["layers"][-1]["size"])'; }
declare -A made
base_layers=$(fresh && "$STRATA" manifest "oci:$W/L:base" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["layers"]))')
for pair in "strata_append $((base_layers + 1))" "umoci_insert $((base_layers + 1))" \
  "strata_mutate $base_layers" "umoci_config $base_layers"; do
  read -r fn want <<<"$pair"
  fresh && "$fn" >/dev/null 2>"$ERR" || { tail "$ERR" >&2; die "failed: $fn"; }
  [ "$(layers_of)" -eq "$want" ] || die "$fn made $(layers_of) layers, not $want"
  made[$fn]=$(top_size)
done

# Peak RSS through a child bash (GNU time runs programs, not functions; the kernel
# reports the largest of the process tree).
export -f strata_append umoci_insert strata_mutate umoci_config
export STRATA W
rss() { # rss FN: peak RSS in MiB of one run
  fresh
  /usr/bin/time -f %M -o "$W/rss" bash -c "$1" >/dev/null 2>"$ERR" || { tail "$ERR" >&2; die "failed: $1"; }
  awk '{ printf "%.0f", $1 / 1024 }' "$W/rss"
}

rows=()
one() { # one TITLE OURS PEER
  local s k r cs ck
  say "$1: $2 vs $3 (warm-up, then $N pairs)"
  read -r s k r cs ck <<<"$(race fresh "$2" "$3")"
  rows+=("| $1 | ${s}s | ${k}s | ${r}x | ${cs}s | ${ck}s | $(rss "$2") MiB | $(rss "$3") MiB |")
}
one "append ($MB MB directory)" strata_append umoci_insert
one "mutate (4 config fields)" strata_mutate umoci_config

date_utc=$(date -u +%F)
results=$ROOT/bench/results-edit-$date_utc.md
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
{
  echo "# Strata edit race, $date_utc (commit $rev)"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), Linux $(uname -r); load before $LOAD_BEFORE, after $(loadavg)."
  echo "Base: oci:corpus of $CORPUS ($((BASE_BYTES / 1000000)) MB layout, $base_layers layers); appended directory $((APP_BYTES / 1000000)) MB; tmpfs; medians of $N alternating pairs."
  echo "umoci $(umoci --version | awk '{ print $3 }')."
  echo
  echo "| job | strata | umoci | ratio (umoci / strata) | CPU strata | CPU umoci | peak RSS strata | peak RSS umoci |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "The appended layer (gzip): strata $((made[strata_append] / 1000)) kB, umoci $((made[umoci_insert] / 1000)) kB. umoci config, like strata mutate, rewrites only the config and manifest: neither reads a layer."
} | tee "$results"
say "wrote $results"
