#!/usr/bin/env bash
# Checks a strata .deb the way a user meets it (CI runs it after scripts/package.sh).
#
# Usage: scripts/check-package.sh DEB      (as root: it installs and removes the package)
#
#   1. the package holds the binary, a man page per command, the completions and the
#      docs, and nothing under /var (the store appears on first use);
#   2. `dpkg -i` installs it; /usr/bin/strata --version names this checkout's commit;
#   3. every man page passes `mandoc -T lint -W warning`, and strata-copy(1) renders
#      with `man -l` without a warning (`man strata-copy` finds it where dpkg installs
#      man pages; minimal images may exclude /usr/share/man, then the deb's copy is used);
#   4. the bash completion loads and completes `strata layer u` to umount, unpack;
#      zsh and fish read theirs when installed;
#   5. scripts/demo.sh runs against /usr/bin/strata (STRATA=/usr/bin/strata), on a
#      smaller sample tree than its default (DEMO_DOC, default /usr/share/doc/dpkg:
#      the hard cases are the demo's own; the bulk only costs CI time);
#   6. `dpkg -r strata` removes every file it installed.
set -euo pipefail
PROG=check-package.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in
  -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
  "") usage "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
DEB=$(realpath "$1")
[ -f "$DEB" ] || die "no package at $1"
[ "$(id -u)" -eq 0 ] || die "installing a package needs root"
cd "$ROOT"
need_packages dpkg-deb:dpkg man:man-db mandoc:mandoc

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/strata-package.XXXXXX")
installed=0
cleanup() {
  if [ $installed = 1 ]; then dpkg -r strata >/dev/null 2>&1 || true; fi
  rm -rf -- "$WORK"
}
trap cleanup EXIT
fail() { die "PACKAGE: $*"; }

# --- 1. contents ------------------------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' >"$WORK/contents"
for f in /usr/bin/strata /usr/share/man/man1/strata.1.gz /usr/share/man/man1/strata-copy.1.gz \
  /usr/share/man/man1/strata-layer-unpack.1.gz /usr/share/bash-completion/completions/strata \
  /usr/share/zsh/vendor-completions/_strata /usr/share/fish/vendor_completions.d/strata.fish \
  /usr/share/doc/strata/README.md /usr/share/doc/strata/docs/convert-images.md; do
  grep -qx "$f" "$WORK/contents" || fail "$f is not in the package"
done
! grep -q '^/var' "$WORK/contents" || fail "the package holds files under /var: $(grep '^/var' "$WORK/contents" | head -n 3)"
pages=$(grep -c '^/usr/share/man/man1/strata.*\.1\.gz$' "$WORK/contents")
say "1. contents: $(grep -vc '/$' "$WORK/contents") files, $pages man pages, nothing under /var"
dpkg-deb -f "$DEB" Depends Recommends Suggests | sed 's/^/   /' >&2
dpkg-deb -x "$DEB" "$WORK/root"

# --- 2. install ---------------------------------------------------------------------------
dpkg -i "$DEB" >"$WORK/dpkg-i.log" 2>&1 || { cat "$WORK/dpkg-i.log" >&2; fail "dpkg -i failed"; }
installed=1
version=$(/usr/bin/strata --version)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
case $version in
  "strata "*"(commit $commit)") ;;
  *) fail "/usr/bin/strata --version says '$version', not the commit $commit" ;;
esac
say "2. installed: $version"

# --- 3. man pages -------------------------------------------------------------------------
mkdir "$WORK/man"
for f in "$WORK"/root/usr/share/man/man1/*.1.gz; do zcat "$f" >"$WORK/man/$(basename "$f" .gz)"; done
lint=$(mandoc -T lint -W warning "$WORK"/man/*.1 2>&1 || true)
[ -z "$lint" ] || { echo "$lint" | head -n 20 >&2; fail "mandoc -T lint found warnings"; }
page=/usr/share/man/man1/strata-copy.1.gz
if [ -f "$page" ]; then
  found=$(man -w strata-copy 2>/dev/null || true)
  [ "$found" = "$page" ] || fail "man strata-copy finds '$found', not $page"
else
  say "note: dpkg excludes /usr/share/man here (path-exclude): checking the deb's copy"
  page=$WORK/root/usr/share/man/man1/strata-copy.1.gz
fi
MANWIDTH=80 man --warnings -l "$page" >"$WORK/man.txt" 2>"$WORK/man.err" || fail "man -l $page failed: $(cat "$WORK/man.err")"
[ ! -s "$WORK/man.err" ] || fail "man -l $page warned: $(head -n 5 "$WORK/man.err")"
grep -q '^EXAMPLES' "$WORK/man.txt" || fail "strata-copy(1) has no EXAMPLES section"
grep -q 'strata copy docker-archive:app.tar oci:app-oci:latest' "$WORK/man.txt" || fail "strata-copy(1) lacks its example"
say "3. man: $pages pages lint clean; strata-copy(1) renders without warnings ($(wc -l <"$WORK/man.txt") lines)"

# --- 4. completions -----------------------------------------------------------------------
words=$(bash -c 'source /usr/share/bash-completion/completions/strata
  COMP_WORDS=(strata layer u); COMP_CWORD=2; COMP_LINE="strata layer u"; COMP_POINT=${#COMP_LINE}
  _strata strata u layer; printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "')
[ "$words" = "umount unpack " ] || fail "bash completes 'strata layer u' to '$words', not 'umount unpack '"
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_strata || fail "zsh cannot read _strata"; fi
if command -v fish >/dev/null; then fish -n /usr/share/fish/vendor_completions.d/strata.fish || fail "fish cannot read strata.fish"; fi
say "4. completions: bash completes 'strata layer u' to: $words"

# --- 5. the demo against the installed binary ---------------------------------------------
t=$(now)
STRATA=/usr/bin/strata DEMO_DOC=${DEMO_DOC:-/usr/share/doc/dpkg} bash scripts/demo.sh >"$WORK/demo.log" 2>&1 || { tail -n 30 "$WORK/demo.log" >&2; fail "the demo failed against /usr/bin/strata"; }
say "5. demo against /usr/bin/strata: $(tail -n 1 "$WORK/demo.log" | cut -c1-60)... ($(since "$t")s)"

# --- 6. remove ----------------------------------------------------------------------------
dpkg -r strata >"$WORK/dpkg-r.log" 2>&1 || { cat "$WORK/dpkg-r.log" >&2; fail "dpkg -r failed"; }
installed=0
left=$(grep -v '/$' "$WORK/contents" | while read -r f; do [ ! -e "$f" ] || echo "$f"; done)
[ -z "$left" ] || fail "dpkg -r left: $left"
! dpkg -s strata 2>/dev/null | grep -q '^Status: install ok' || fail "dpkg still lists strata as installed"
say "6. removed: no file of the package is left"
echo "package OK: $(basename "$DEB")"
