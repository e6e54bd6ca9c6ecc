# shellcheck shell=bash
# Helpers sourced by scripts/*.sh, bench/run.sh and .ci/run. Not a command of its own.
#
# Sets ROOT (the repository) and SHARED (shared/ beside it, or $SHARED), and gives
# say/die/phase logging, Debian package installs, and the release build of strata.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PROG=${PROG:-$(basename "$0")}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# Elapsed seconds since $1 (from `now`), one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# phase NAME: logs the start of a phase with a timestamp; the previous one's duration too.
_PHASE_NAME=""
_PHASE_START=""
phase() {
  phase_end
  _PHASE_NAME=$1
  _PHASE_START=$(now)
  printf '\n==> [%s] %s\n' "$(date -u +%T)" "$1" >&2
}
phase_end() {
  if [ -n "$_PHASE_NAME" ]; then
    printf '==> [%s] %s: done in %ss\n' "$(date -u +%T)" "$_PHASE_NAME" "$(since "$_PHASE_START")" >&2
    PHASE_TIMES+=("$_PHASE_NAME	$(since "$_PHASE_START")")
  fi
  _PHASE_NAME=""
}
PHASE_TIMES=()

# need_packages CMD:PACKAGE...: installs, with apt-get, the packages of commands that
# are missing (running `apt-get update` once if the first install fails).
need_packages() {
  local pair cmd pkgs=() missing=()
  for pair in "$@"; do
    cmd=${pair%%:*}
    if [ "${cmd#/}" != "$cmd" ]; then [ -e "$cmd" ] && continue
    else command -v "$cmd" >/dev/null 2>&1 && continue; fi
    missing+=("$cmd")
    pkgs+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: install the Debian packages ${pkgs[*]} (as root)"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install ${pkgs[*]}"
  say "installing ${pkgs[*]} with apt-get (for ${missing[*]})"
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/strata-apt.XXXXXX")
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
    say "apt-get install failed; running apt-get update once and retrying"
    apt-get update >>"$log" 2>&1 || true
    if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
      tail -n 20 "$log" >&2
      die "apt-get install ${pkgs[*]} failed (log: $log)"
    fi
  fi
  rm -f "$log"
}

# build_strata: release build of the strata binary; sets STRATA to its path.
build_strata() {
  say "building strata (cargo build --release -p strata-cli)"
  (cd "$ROOT" && cargo build --release -p strata-cli --quiet) || die "the release build failed"
  STRATA=${CARGO_TARGET_DIR:-$ROOT/target}/release/strata
  [ -x "$STRATA" ] || die "no binary at $STRATA after the build"
}

# ensure_corpus SIZE DIR: builds the test corpus of that size into DIR unless it is
# already complete (shared/testdata/make-corpus.sh; it installs what it needs).
ensure_corpus() {
  local size=$1 dir=$2
  if [ -f "$dir/CORPUS.md" ] && [ ! -e "$dir/.work" ] && [ -f "$dir/.stamps/evil" ]; then
    return 0
  fi
  # Another make-corpus.sh may be building into the same directory: wait for it
  # rather than racing it (it resumes from its stamps anyway if it stopped).
  local waited=0
  while corpus_builder_running "$dir"; do
    [ $waited -eq 0 ] && say "another make-corpus.sh is building $dir; waiting for it"
    sleep 10
    waited=$((waited + 10))
    [ $waited -lt 3600 ] || die "waited an hour for the corpus build in $dir"
  done
  if [ -f "$dir/CORPUS.md" ] && [ ! -e "$dir/.work" ] && [ -f "$dir/.stamps/evil" ]; then
    return 0
  fi
  local maker=$SHARED/testdata/make-corpus.sh
  [ -x "$maker" ] || [ -f "$maker" ] || die "no $maker: shared/ must sit beside the repository (or set SHARED=DIR)"
  [ "$(id -u)" -eq 0 ] || die "building the corpus needs root (device nodes, owners, xattrs)"
  say "building the $size corpus in $dir (make-corpus.sh; once)"
  CORPUS_SIZE=$size bash "$maker" "$dir"
}

# corpus_builder_running DIR: whether a make-corpus.sh process names DIR on its command line.
corpus_builder_running() {
  local want f cmd
  want=$(cd "$1" 2>/dev/null && pwd -P) || return 1
  for f in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' <"$f" 2>/dev/null) || continue
    case $cmd in
      *make-corpus.sh*) ;;
      *) continue ;;
    esac
    case " $cmd" in
      *" $1"* | *" $want"*) return 0 ;;
    esac
  done
  return 1
}

# usage FILE: prints the comment block at the top of FILE (after the #! line).
usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# --- benchmark timing (bench/*.sh) ---------------------------------------------------
# measure CLEAN RUN ARGS...: one warm-up and N timed runs of `RUN ARGS...`, each after
# `CLEAN ARGS...` and a sync (untimed); prints the median in seconds. Uses $N and $ERR
# (the log of the last run, shown when it fails).
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
