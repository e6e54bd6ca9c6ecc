# shellcheck shell=bash
# Helpers sourced by the bench scripts (bench/run.sh and the races it calls). Not a
# command of its own. Expects scripts/lib.sh to be sourced first, and N, BENCH_WORK,
# CORPUS and ERR to be set.

# plain_layer I: BENCH_WORK/layers/L<I>.tar, layer I of oci:corpus gunzipped (checked
# against its diffID; kept for the next run). Prints the path.
plain_layer() {
  local i=$1 row blob diff tar
  row=$(awk -F'\t' -v i="$i" '$1 == i' "$CORPUS/layers.tsv")
  [ -n "$row" ] || die "no layer $i in $CORPUS/layers.tsv"
  blob=$(cut -f2 <<<"$row")
  diff=$(cut -f4 <<<"$row")
  tar=$BENCH_WORK/layers/L$i.tar
  mkdir -p "$BENCH_WORK/layers"
  if [ "$(cat "$tar.diffid" 2>/dev/null)" != "$diff" ]; then
    say "layer $i: gunzip ${blob:0:19}... to $tar"
    rm -rf -- "$tar" "$tar.diffid" "$BENCH_WORK/layers/umoci-L$i"
    gunzip -c "$CORPUS/oci/blobs/sha256/${blob#sha256:}" >"$tar.tmp"
    [ "sha256:$(sha256sum "$tar.tmp" | cut -d' ' -f1)" = "$diff" ] || die "layer $i does not hash to its diffID $diff"
    mv "$tar.tmp" "$tar"
    echo "$diff" >"$tar.diffid"
  fi
  echo "$tar"
}

# A clean-up step that does nothing.
nothing() { :; }

# --- timing -------------------------------------------------------------------------
# measure CLEAN RUN ARGS...: one warm-up and N timed runs of `RUN ARGS...`, each after
# `CLEAN ARGS...` and a sync (untimed); prints the median in seconds.
measure() {
  local clean=$1 run=$2 i t0 t1
  shift 2
  local -a times=()
  for ((i = 0; i <= N; i++)); do
    "$clean" "$@"
    sync
    t0=$(date +%s%N)
    if ! "$run" "$@" >/dev/null 2>"$ERR"; then
      tail -n 20 "$ERR" >&2
      die "failed: $run $*"
    fi
    t1=$(date +%s%N)
    [ "$i" -eq 0 ] || times+=($((t1 - t0)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.4f\n", m / 1e9 }'
}

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1e6 / s; else print "-" }'; }
ratio() { awk -v p="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.2f", p / s; else print "-" }'; }
# verdict RATIO TARGET
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 >= t) ? "yes" : "**no**" }'; }
cell() { printf '%s s (%s MB/s)' "$1" "$(mbps "$2" "$1")"; }

