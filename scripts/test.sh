#!/usr/bin/env bash
# Runs every test of the workspace, on a fresh Debian 12 machine too.
#
# Usage: scripts/test.sh [ARGS...]     (ARGS go to `cargo nextest run`, or `cargo test`)
#
# 1. installs the Debian packages the tests and the corpus use (umoci, skopeo, podman,
#    bsdtar, attr, zstd, python3, tar, gzip, docker-registry and apache2-utils' htpasswd
#    for the registry tests; docker.io, containerd and runc for the engine and init-layer
#    tests, which start their own dockerd, containerd and runc; mandoc for the man
#    pages' lint; Go and containerd's Go sources for containerd's snapshotter suite and
#    tests/ctrd-pull (containerd's client pull), which tests/snapshotter.rs builds once
#    into target/ctrdsuite; `apt-get update` once
#    if an install fails);
# 2. builds the small test corpus into $CORPUS (default target/corpus) unless it is
#    there already, with $SHARED/testdata/make-corpus.sh (SHARED: ../shared beside the
#    repository), and exports STRATA_CORPUS=$CORPUS for the tests;
# 3. runs `cargo nextest run --workspace --no-fail-fast` (or `cargo test --workspace`
#    without cargo-nextest), then the doctests (`cargo test --doc --workspace`).
#
# Exits non-zero if anything failed; ends with one line "tests: N passed, N failed".
# Needs root for the corpus (device nodes, foreign owners, security.* xattrs).
set -euo pipefail
PROG=test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

CORPUS=${CORPUS:-$ROOT/target/corpus}
cd "$ROOT"

need_packages umoci:umoci skopeo:skopeo podman:podman buildah:buildah bsdtar:libarchive-tools setfattr:attr \
  getfattr:attr zstd:zstd python3:python3 tar:tar gzip:gzip docker-registry:docker-registry \
  htpasswd:apache2-utils /usr/sbin/dockerd:docker.io /usr/bin/containerd:containerd \
  /usr/bin/ctr:containerd /usr/sbin/runc:runc mandoc:mandoc /usr/bin/go:golang-go \
  /usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite/testsuite.go:golang-github-containerd-containerd-dev

if [ "$(id -u)" -eq 0 ] || [ -f "$CORPUS/CORPUS.md" ]; then
  ensure_corpus small "$CORPUS"
  STRATA_CORPUS=$(cd "$CORPUS" && pwd)
  export STRATA_CORPUS
  export STRATA_SHARED=$SHARED
  say "corpus: STRATA_CORPUS=$STRATA_CORPUS"
else
  say "warning: not root, so no corpus is built; tests that need STRATA_CORPUS will skip"
fi

log=$ROOT/target/test-logs
mkdir -p "$log"
status=0
passed=0
failed=0

# nextest (or cargo test) for unit and integration tests.
if cargo nextest --version >/dev/null 2>&1; then
  say "running cargo nextest run --workspace --no-fail-fast $*"
  cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee "$log/nextest.log" || status=1
  summary=$(grep -E '^ *Summary \[.*tests? run:' "$log/nextest.log" | tail -n1 || true)
  if [ -n "$summary" ]; then
    p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
    passed=$((passed + p))
    failed=$((failed + f))
  fi
else
  say "cargo-nextest not found: running cargo test --workspace --no-fail-fast $*"
  cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log/cargo-test.log" || status=1
  read -r p f < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
                       END { print p + 0, f + 0 }' "$log/cargo-test.log")
  passed=$((passed + p))
  failed=$((failed + f))
fi

# Doctests: nextest does not run them (and `cargo test --workspace` above already did).
if cargo nextest --version >/dev/null 2>&1; then
  say "running cargo test --doc --workspace"
  cargo test --doc --workspace --no-fail-fast 2>&1 | tee "$log/doctest.log" || status=1
  read -r p f < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
                       END { print p + 0, f + 0 }' "$log/doctest.log")
  passed=$((passed + p))
  failed=$((failed + f))
fi

if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
  say "error: a test command failed before it could report (see above; logs in $log)"
  failed=1
fi
if [ $status -ne 0 ]; then
  say "FAILED (logs in $log)"
else
  say "all tests passed"
fi
echo "tests: $passed passed, $failed failed"
exit $status
