#!/usr/bin/env bash
# Builds the Debian package of strata: target/debian/strata_VERSION-1_ARCH.deb.
#
# Usage: scripts/package.sh [--debug]
#
#   1. builds strata: the release profile, or with --debug the dev profile that the
#      tests already built (CI uses it: no release build to wait for);
#   2. makes the man pages (`strata manual`) and the bash, zsh and fish completions
#      (`strata completion SHELL`) from the binary's own clap definition into
#      target/deb-assets/;
#   3. runs cargo-deb (`cargo install cargo-deb --locked` first when it is missing)
#      without building again; the package's contents are in crates/strata-cli/Cargo.toml
#      ([package.metadata.deb]): /usr/bin/strata, the man pages, the completions, README
#      and docs/ under /usr/share/doc/strata.
#
# Prints the path of the .deb on its last line.
set -euo pipefail
PROG=package.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profile=release
case "${1:-}" in
  -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
  --debug) profile=dev ;;
  "") ;;
  *) die "unknown argument: $1 (scripts/package.sh [--debug])" ;;
esac
[ $# -le 1 ] || die "too many arguments (scripts/package.sh [--debug])"
cd "$ROOT"
# dpkg-shlibdeps finds the libraries the binary needs (Depends: $auto).
need_packages dpkg-shlibdeps:dpkg-dev

# The cargo-deb release this script is written against (its options and its handling
# of target/release/ asset paths). Installed light: a debug build without xz (the
# package is gzip-compressed, -Z gz) compiles in half the CPU time of the default
# (measured: 1m39s against 3m30s of CPU), and packing a few MB needs no optimizer.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked --debug)"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet --debug \
    --no-default-features --features gzip \
    || die "cargo install cargo-deb failed (it needs crates.io)"
fi

target=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$profile" = release ]; then
  say "building strata (cargo build --release -p strata-cli)"
  cargo build --release -p strata-cli --quiet || die "the release build failed"
  bin=$target/release/strata
else
  say "building strata (cargo build -p strata-cli; a no-op after the tests)"
  cargo build -p strata-cli --quiet || die "the build failed"
  bin=$target/debug/strata
fi
[ -x "$bin" ] || die "no binary at $bin after the build"

# Generated from the clap definition by the binary being packed (the paths are the
# assets of [package.metadata.deb]).
assets=$ROOT/target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" manual "$assets/man" >/dev/null
"$bin" completion bash >"$assets/completions/strata"
"$bin" completion zsh >"$assets/completions/_strata"
"$bin" completion fish >"$assets/completions/strata.fish"
say "$(find "$assets/man" -name '*.1' | wc -l) man pages and 3 completion scripts in $assets"

# cargo-deb warns that the dev profile is meant for development: it is, here, for CI.
# Binaries are stripped (the debug build's debug info would make the package ~10x larger).
say "running cargo deb (profile $profile)"
deb=$(cargo deb -p strata-cli --no-build --profile "$profile" --fast -Z gz 2>"$target/cargo-deb.log" | tail -n 1) || {
  cat "$target/cargo-deb.log" >&2
  die "cargo deb failed"
}
[ -f "$deb" ] || { cat "$target/cargo-deb.log" >&2; die "cargo deb printed no package path"; }
say "$(du -h "$deb" | cut -f1) $deb"
echo "$deb"
