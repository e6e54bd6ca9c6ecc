#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a while each.
#
# Usage: scripts/fuzz.sh SECONDS [TARGET...]
#   targets: tar_reader unpack recipe_roundtrip wclayer_backup_stream wclayer_metadata
#            wclayer_import (default: all, one after the other)
#
# Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) if it is missing, and builds
# with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags; only stable is installed).
# Seeds: the edge/ and evil/ tars of the test corpus ($STRATA_CORPUS, else target/corpus,
# else /var/tmp/strata-corpus-full), plus gzip and zstd copies of a few of them, and
# fuzz/regressions/TARGET (inputs that once crashed it: add each fixed crash there). New
# inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET (reproduce one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz TARGET FILE`). Each target's log is
# target/fuzz-logs/TARGET.log. Exits non-zero if any target crashed.
# Extra libFuzzer flags: FUZZ_ARGS="-max_len=65536 ...".
set -euo pipefail
PROG=fuzz.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac
if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then usage "${BASH_SOURCE[0]}" >&2; exit 2; fi
SECONDS_EACH=$1
shift
ALL_TARGETS=(tar_reader unpack recipe_roundtrip wclayer_backup_stream wclayer_metadata wclayer_import)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${ALL_TARGETS[*]})"
done

cd "$ROOT"
export RUSTC_BOOTSTRAP=1
FUZZ_DIR=$ROOT/fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked || die "cannot install cargo-fuzz"
fi
say "$(cargo fuzz --version)"

# Seeds.
corpus=""
for c in "${STRATA_CORPUS:-}" "$ROOT/target/corpus" /var/tmp/strata-corpus-full; do
  if [ -n "$c" ] && [ -d "$c/edge" ]; then corpus=$c; break; fi
done
seeds=()
if [ -n "$corpus" ]; then
  seeds_dir=$ROOT/target/fuzz-seeds
  mkdir -p "$seeds_dir"
  for f in symlinks.tar hardlinks.tar whiteout-opaque-dir.tar longnames-pax.tar sparse-pax-1.0.tar; do
    [ -f "$corpus/edge/$f" ] || continue
    command -v gzip >/dev/null && gzip -9nc "$corpus/edge/$f" >"$seeds_dir/$f.gz"
    command -v zstd >/dev/null && zstd -q -19 -c "$corpus/edge/$f" >"$seeds_dir/$f.zst"
  done
  seeds=("$corpus/edge" "$corpus/evil" "$seeds_dir")
  say "seeding from $corpus/edge, $corpus/evil and compressed copies"
else
  say "no test corpus found (run scripts/test.sh first): fuzzing without seeds"
fi

say "building the fuzz targets (release, ASan, debug assertions)"
build_start=$(now)
logs=$ROOT/target/fuzz-logs
mkdir -p "$logs"
if ! cargo fuzz build --fuzz-dir "$FUZZ_DIR" >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log" >&2
  die "cargo fuzz build failed (log: $logs/build.log)"
fi
say "built in $(since "$build_start")s"
failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ_DIR/corpus/$t"
  # Inputs that once crashed a target: replayed first, every run.
  regress=()
  if [ -d "$FUZZ_DIR/regressions/$t" ]; then regress=("$FUZZ_DIR/regressions/$t"); fi
  # libFuzzer's leak check after each input runs while the threads that input spawned
  # may still be exiting (their std::thread handles are freed last), which LeakSanitizer
  # reports as leaks (google/sanitizers#757). The targets that unpack spawn threads, so
  # they run without it; the single-threaded tar_reader keeps it.
  leaks=1
  case $t in unpack | recipe_roundtrip) leaks=0 ;; esac
  # Seeds of a target's own (Windows layer tars, backup streams, SDs), kept small.
  if [ -d "$FUZZ_DIR/seeds/$t" ]; then regress+=("$FUZZ_DIR/seeds/$t"); fi
  say "fuzzing $t for ${SECONDS_EACH}s (log: $logs/$t.log)"
  # -max_len: the largest seed worth mutating whole (the biggest evil tar, 2 MB of
  # nested directories, is read truncated). -timeout: a hang is a bug too.
  # shellcheck disable=SC2086
  if cargo fuzz run --fuzz-dir "$FUZZ_DIR" "$t" "$FUZZ_DIR/corpus/$t" "${regress[@]}" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -max_len=131072 -timeout=20 -rss_limit_mb=4096 -detect_leaks=$leaks \
    -print_final_stats=1 ${FUZZ_ARGS:-} >"$logs/$t.log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' "$logs/$t.log" | tail -n1 || true)
    say "$t: ok, ${execs:-?} inputs (${rate:-?}/s), ${cov:-cov: ?}, corpus $(find "$FUZZ_DIR/corpus/$t" -type f | wc -l) files"
  else
    failed+=("$t")
    say "$t: FAILED; what it reported (full log: $logs/$t.log):"
    { grep -m 2 -A 1 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer)' "$logs/$t.log" \
        && grep -E '^SUMMARY:|Test unit written' "$logs/$t.log"; } >&2 \
      || tail -n 30 "$logs/$t.log" >&2
    ls "$FUZZ_DIR/artifacts/$t" 2>/dev/null | sed "s|^|  artifact: fuzz/artifacts/$t/|" >&2 || true
  fi
done

# Jails of fuzzer processes that are gone (fuzz/src/lib.rs: /dev/shm/strata-fuzz-PID).
for j in /dev/shm/strata-fuzz-* "${TMPDIR:-/tmp}"/strata-fuzz-*; do
  [ -d "$j" ] || continue
  pid=${j##*-}
  [[ $pid =~ ^[0-9]+$ ]] || continue
  kill -0 "$pid" 2>/dev/null || rm -rf -- "$j"
done

if [ ${#failed[@]} -gt 0 ]; then
  die "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
fi
say "all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s without a crash"
