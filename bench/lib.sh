# shellcheck shell=bash
# Helpers sourced by the bench scripts that race on corpus layers (bench/run.sh,
# bench/store.sh). Not a command of its own. Expects scripts/lib.sh (which has the
# timing helpers: measure, mbps, ratio, verdict, cell) to be sourced first, and
# BENCH_WORK and CORPUS to be set.

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


# race CLEAN A B ARGS...: Strata (`A ARGS...`) against a peer (`B ARGS...`), run by run
# in turn, so that the machine's load moves both alike: one warm-up each, then N pairs;
# the order within a pair alternates (A B, B A, ...), and each run gets a fresh
# destination (`CLEAN ARGS...` and a sync, untimed). Prints five words: the median wall
# time of A, that of B (seconds), the median of the per-pair ratios B / A (above 1: A is
# faster), and the median CPU time (user + system, all threads and children) of A and
# of B, which a busy machine moves much less than wall time. Uses $N and $ERR.
race() {
  local clean=$1 a=$2 b=$3 i j run t0 t1 ta tb ca cb
  shift 3
  local -a as=() bs=() rs=() cas=() cbs=()
  local cpu_file=$ERR.cpu TIMEFORMAT='%U %S'
  for ((i = 0; i <= N; i++)); do
    for j in 0 1; do
      if (((i + j) % 2 == 0)); then run=$a; else run=$b; fi
      "$clean" "$@"
      sync
      t0=$(date +%s%N)
      if ! { time "$run" "$@" >/dev/null 2>"$ERR"; } 2>"$cpu_file"; then
        tail -n 20 "$ERR" >&2
        die "failed: $run $*"
      fi
      t1=$(date +%s%N)
      if [ "$run" = "$a" ]; then
        ta=$((t1 - t0)) ca=$(awk 'END { printf "%.0f", ($1 + $2) * 1e9 }' "$cpu_file")
      else
        tb=$((t1 - t0)) cb=$(awk 'END { printf "%.0f", ($1 + $2) * 1e9 }' "$cpu_file")
      fi
    done
    [ "$i" -eq 0 ] && continue
    as+=("$ta") bs+=("$tb") cas+=("$ca") cbs+=("$cb")
    rs+=("$(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.6f", b / a }')")
  done
  printf '%s %s %s %s %s\n' "$(median_ns "${as[@]}")" "$(median_ns "${bs[@]}")" \
    "$(printf '%s\n' "${rs[@]}" | sort -g | awk '{ a[NR] = $1 } END {
      m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f\n", m }')" \
    "$(median_ns "${cas[@]}")" "$(median_ns "${cbs[@]}")"
}

# median_ns T...: the median of nanosecond times, in seconds.
median_ns() {
  printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.4f\n", m / 1e9 }'
}

# loadavg: the 1, 5 and 15 minute load averages, as /proc/loadavg has them.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
