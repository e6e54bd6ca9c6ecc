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

