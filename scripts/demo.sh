#!/usr/bin/env bash
# Strata's main job end to end, on a real tree, checking every step.
#
# Usage: scripts/demo.sh            (KEEP=1 keeps the work directory for a look;
#                                   STRATA=PATH runs an installed strata, unbuilt;
#                                   DEMO_DOC=DIR copies DIR instead of /usr/share/doc)
#
# Builds strata (release), copies /usr/share/doc into a sample tree and adds the hard
# parts (symlinks, a hard-link group, user xattrs, nanosecond mtimes, setuid, a fifo, a
# device node and foreign owners when root, long and non-ASCII names), then:
#   1. strata layer pack --compress zstd       tree -> layer.tar.zst, prints the diffID
#   2. strata layer unpack --recipe            layer -> a new tree, plus a recipe
#   3. tree-listing.py of both trees           must be identical
#   4. strata layer repack                     recipe + tree -> the tar, bit-exact:
#                                              its sha256 must be the diffID of step 1
#   5. strata layer digest                     must agree on diffID and blob digest
# and then, in the default store (/var/lib/strata as root; STRATA_ROOT or --root elsewhere):
#   6. strata layer create + apply             the layer becomes a store layer; its
#                                              `layer diff` is the tar, bit-exact
#   7. a container layer on it                 mount, change (add, modify, delete),
#                                              `layer changes` lists exactly that
#   8. its diff applied as a new layer         on the same parent: the merged view is
#                                              the container's, file for file
#   9. umount, rm, fsck                        the store is left as it was, and clean
#  10. strata import-dir                       the sample tree becomes an image
#  11. strata save, then load into a second    same image ID; the image's view shows
#      store                                   the sample tree, file for file
#  12. strata commit                           a change in a container on it (on its
#                                              init layer) is its only change and
#                                              becomes the image's next layer; fsck clean
#  13. strata push, then pull into a third     through docker-registry on loopback:
#      store                                   same image ID; a second push sends no
#                                              layer
# Exits non-zero at the first mismatch. Needs python3 and shared/testdata beside the repo.
set -euo pipefail
PROG=demo.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in -h | --help) usage "${BASH_SOURCE[0]}"; exit 0 ;; esac

LISTING=$SHARED/testdata/tree-listing.py
[ -f "$LISTING" ] || die "no $LISTING: shared/ must sit beside the repository (or set SHARED=DIR)"
need_packages python3:python3 setfattr:attr zstd:zstd sha256sum:coreutils docker-registry:docker-registry
# STRATA=/usr/bin/strata runs the demo against an installed strata (the package's check).
if [ -n "${STRATA:-}" ]; then
  [ -x "$STRATA" ] || die "STRATA=$STRATA is not an executable"
else
  build_strata
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/strata-demo.XXXXXX")
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf -- "$WORK"; fi
}
trap cleanup EXIT
SRC=$WORK/src
DST=$WORK/unpacked
LAYER=$WORK/layer.tar.zst
RECIPE=$WORK/layer.recipe
REBUILT=$WORK/rebuilt.tar

json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { die "MISMATCH: $*"; }

# --- the sample tree --------------------------------------------------------------
say "making a sample tree in $SRC"
mkdir -p "$SRC/extra/dir/empty"
DEMO_DOC=${DEMO_DOC:-/usr/share/doc}
if [ -d "$DEMO_DOC" ]; then cp -a "$DEMO_DOC" "$SRC/doc"; fi
X=$SRC/extra
printf 'shared body\n' >"$X/hard-a"
ln "$X/hard-a" "$X/dir/hard-b"
ln "$X/hard-a" "$X/hard-c"
ln -s hard-a "$X/link-relative"
ln -s /etc/os-release "$X/link-absolute"
ln -s ../does/not/exist "$X/link-dangling"
ln -s dir "$X/link-to-dir"
printf 'with xattrs\n' >"$X/xattrs"
setfattr -n user.demo -v "hello" "$X/xattrs"
setfattr -n user.long -v "$(head -c 1500 /dev/zero | tr '\0' x)" "$X/xattrs"
setfattr -n user.dir -v "on a directory" "$X/dir"
printf 'nanoseconds\n' >"$X/mtime-ns"
touch -d '2021-03-04 05:06:07.123456789 UTC' "$X/mtime-ns"
touch -h -d '2019-12-31 23:59:59.5 UTC' "$X/link-relative"
touch -d '1970-01-01 00:00:00 UTC' "$X/dir/empty"
printf '#!/bin/sh\n' >"$X/setuid"
chmod 4755 "$X/setuid"
printf 'secret\n' >"$X/mode-0400"
chmod 0400 "$X/mode-0400"
mkdir -p "$X/sticky" && chmod 1777 "$X/sticky"
mkfifo "$X/fifo"
long=$(printf 'n%.0s' $(seq 1 150))
printf 'long name\n' >"$X/$long"
printf 'café\n' >"$X/café-NFC"
printf 'café\n' >"$X/cafe$(printf '\xcc\x81')-NFD"
printf '日本語\n' >"$X/日本語.txt"
head -c 3000000 /dev/urandom >"$X/random.bin"
if [ "$(id -u)" -eq 0 ]; then
  mknod "$X/null-device" c 1 3
  printf 'owned\n' >"$X/owned-1000" && chown 1000:1000 "$X/owned-1000"
  printf 'owned\n' >"$X/owned-big" && chown 3000000:65534 "$X/owned-big"
fi
# Directory times last: creating the entries above changed them.
touch -d '2022-02-02 02:02:02.222222222 UTC' "$X/dir" "$X/sticky"
entries=$(find "$SRC" | wc -l)
bytes=$(du -sb "$SRC" | cut -f1)
say "sample tree: $entries entries, $bytes bytes"

# --- 1. pack ------------------------------------------------------------------------
t=$(now)
"$STRATA" --json layer pack "$SRC" -o "$LAYER" --compress zstd >"$WORK/pack.json"
pack_s=$(since "$t")
DIFF_ID=$(json diff_id <"$WORK/pack.json")
BLOB=$(json blob_digest <"$WORK/pack.json")
say "1. pack:   $DIFF_ID (${pack_s}s, $(stat -c %s "$LAYER") bytes zstd)"
[ "sha256:$(sha256sum "$LAYER" | cut -d' ' -f1)" = "$BLOB" ] || fail "pack's blob digest is not the sha256 of $LAYER"
[ "sha256:$(zstd -dc "$LAYER" | sha256sum | cut -d' ' -f1)" = "$DIFF_ID" ] \
  || fail "pack's diffID is not the sha256 of the layer decompressed by zstd(1)"

# Determinism: packing again gives the same bytes.
"$STRATA" -q layer pack "$SRC" -o "$WORK/again.tar.zst" --compress zstd
cmp -s "$LAYER" "$WORK/again.tar.zst" || fail "packing the same tree twice gave different layers"
rm -f "$WORK/again.tar.zst"

# --- 2. unpack ----------------------------------------------------------------------
t=$(now)
"$STRATA" --json layer unpack -i "$LAYER" "$DST" --recipe "$RECIPE" >"$WORK/unpack.json"
unpack_s=$(since "$t")
[ "$(json diff_id <"$WORK/unpack.json")" = "$DIFF_ID" ] || fail "unpack's diffID differs from pack's"
[ "$(json blob_digest <"$WORK/unpack.json")" = "$BLOB" ] || fail "unpack's blob digest differs from pack's"
say "2. unpack: $(json entries <"$WORK/unpack.json") entries (${unpack_s}s, sandbox: $(json sandbox <"$WORK/unpack.json"))"

# --- 3. same tree -------------------------------------------------------------------
# The root directory itself is not part of a layer: compare everything below it.
python3 "$LISTING" "$SRC" | grep -v '^\.	' >"$WORK/src.tsv"
python3 "$LISTING" "$DST" | grep -v '^\.	' >"$WORK/dst.tsv"
if ! diff -u "$WORK/src.tsv" "$WORK/dst.tsv" >"$WORK/tree.diff"; then
  head -n 40 "$WORK/tree.diff" >&2
  KEEP=1
  fail "the unpacked tree differs from the original (tree-listing.py; full diff: $WORK/tree.diff)"
fi
say "3. trees:  identical ($(wc -l <"$WORK/src.tsv") entries: type, mode, owner, size, mtime ns, target, sha256, links, rdev, xattrs)"

# --- 4. repack ----------------------------------------------------------------------
t=$(now)
"$STRATA" --json layer repack "$DST" --recipe "$RECIPE" -o "$REBUILT" >"$WORK/repack.json"
repack_s=$(since "$t")
got="sha256:$(sha256sum "$REBUILT" | cut -d' ' -f1)"
[ "$got" = "$DIFF_ID" ] || fail "the rebuilt tar hashes to $got, not the diffID $DIFF_ID"
[ "$(json diff_id <"$WORK/repack.json")" = "$DIFF_ID" ] || fail "repack reports another diffID"
say "4. repack: bit-exact, sha256 = diffID (${repack_s}s, recipe $(stat -c %s "$RECIPE") bytes)"

# --- 5. digest ----------------------------------------------------------------------
"$STRATA" --json layer digest "$LAYER" >"$WORK/digest.json"
[ "$(json diff_id <"$WORK/digest.json")" = "$DIFF_ID" ] || fail "digest's diffID differs"
[ "$(json blob_digest <"$WORK/digest.json")" = "$BLOB" ] || fail "digest's blob digest differs"
"$STRATA" --json layer digest "$REBUILT" >"$WORK/digest-plain.json"
[ "$(json diff_id <"$WORK/digest-plain.json")" = "$DIFF_ID" ] || fail "digest of the rebuilt tar differs"
say "5. digest: agrees (zstd blob $BLOB)"

# --- 6-9. the store ------------------------------------------------------------------
ID=demo-$$
stj() { "$STRATA" --json "$@"; }
# On any failure, take the demo's layers out of the store again (best effort).
store_cleanup() {
  for l in "$ID-ctr" "$ID-check"; do "$STRATA" -q layer umount "$l" 2>/dev/null || true; done
  for l in "$ID-check" "$ID-ctr" "$ID-commit" "$ID-base"; do "$STRATA" -q layer rm "$l" 2>/dev/null || true; done
}
trap 'store_cleanup; cleanup' EXIT
"$STRATA" -q layer create "$ID-base"
content=$(stj layer inspect "$ID-base" | json content)
say "6. store:  layer $ID-base in the default store ($(dirname "$(dirname "$(dirname "$content")")"), $(stj layer inspect "$ID-base" | json driver) driver)"
t=$(now)
stj layer apply "$ID-base" -i "$LAYER" >"$WORK/apply.json"
apply_s=$(since "$t")
[ "$(json diff_id <"$WORK/apply.json")" = "$DIFF_ID" ] || fail "apply's diffID differs from pack's"
got="sha256:$("$STRATA" layer diff "$ID-base" | sha256sum | cut -d' ' -f1)"
[ "$got" = "$DIFF_ID" ] || fail "the store re-exports the layer as $got, not $DIFF_ID"
say "6. store:  applied (${apply_s}s); layer diff is bit-exact"

"$STRATA" -q layer create --rw --parent "$ID-base" "$ID-ctr"
M=$("$STRATA" layer mount "$ID-ctr")
printf 'added in the container\n' >"$M/extra/added"
printf 'rewritten\n' >"$M/extra/hard-c"
rm "$M/extra/link-dangling"
changes=$("$STRATA" layer changes "$ID-ctr" | tr '\n' ' ')
want="C /extra A /extra/added C /extra/hard-c D /extra/link-dangling "
[ "$changes" = "$want" ] || fail "layer changes: got '$changes', want '$want'"
say "7. changes: $changes"

"$STRATA" layer diff "$ID-ctr" -o "$WORK/ctr.tar" >/dev/null
"$STRATA" -q layer create --parent "$ID-base" "$ID-commit"
"$STRATA" -q layer apply "$ID-commit" -i "$WORK/ctr.tar"
"$STRATA" -q layer create --rw --parent "$ID-commit" "$ID-check"
M2=$("$STRATA" layer mount "$ID-check")
python3 "$LISTING" "$M" | grep -v '^\.	' >"$WORK/ctr.tsv"
python3 "$LISTING" "$M2" | grep -v '^\.	' >"$WORK/commit.tsv"
diff -u "$WORK/ctr.tsv" "$WORK/commit.tsv" >"$WORK/commit.diff" || { head -n 20 "$WORK/commit.diff" >&2; fail "the committed diff does not reproduce the container's tree"; }
say "8. commit: the container's diff ($(stat -c %s "$WORK/ctr.tar") bytes) re-applied gives the same tree"

"$STRATA" -q layer umount "$ID-ctr"
"$STRATA" -q layer umount "$ID-check"
"$STRATA" -q layer rm "$ID-check" "$ID-ctr" "$ID-commit" "$ID-base"
"$STRATA" -q fsck || fail "fsck of the store is not clean"
say "9. store:  layers removed, fsck clean"

# --- 10-12. an image, built, saved, loaded ------------------------------------------
IMG=demo/sample:$$
image_cleanup() {
  if [ -n "${OTHER:-}" ]; then "$STRATA" -q --root "$OTHER" layer umount box 2>/dev/null || true; fi
  "$STRATA" -q rmi -f "$IMG" 2>/dev/null || true
  "$STRATA" -q rmi -f "$IMG-commit" 2>/dev/null || true
}
trap 'image_cleanup; store_cleanup; cleanup' EXIT
t=$(now)
IMAGE_ID=$("$STRATA" --json import-dir "$SRC" "$IMG" | json id)
build_s=$(since "$t")
say "10. image: $IMG = $IMAGE_ID (import-dir, ${build_s}s)"
t=$(now)
"$STRATA" -q save "$IMG" -o "$WORK/image.tar"
save_s=$(since "$t")
# A second store, as another machine would have: the archive alone carries the image.
OTHER=$WORK/other-store
t=$(now)
"$STRATA" -q --root "$OTHER" load -i "$WORK/image.tar"
load_s=$(since "$t")
got=$("$STRATA" --json --root "$OTHER" inspect "$IMG" | json id)
[ "$got" = "$IMAGE_ID" ] || fail "the loaded image is $got, not $IMAGE_ID"
TOP=$("$STRATA" --json --root "$OTHER" inspect "$IMG" | json top_layer)
# The image's own tree: its top layer's read-only view.
M3=$("$STRATA" --root "$OTHER" layer mount "$TOP")
python3 "$LISTING" "$M3" | grep -v '^\.	' >"$WORK/loaded.tsv"
"$STRATA" -q --root "$OTHER" layer umount "$TOP"
diff -u "$WORK/src.tsv" "$WORK/loaded.tsv" >"$WORK/loaded.diff" || { head -n 20 "$WORK/loaded.diff" >&2; fail "the loaded image's tree differs from the directory it was made of"; }
# A container on it (on its init layer: the runtime's mountpoints, which no commit takes).
"$STRATA" -q --root "$OTHER" layer create --rw --parent "$TOP" box
M3=$("$STRATA" --root "$OTHER" layer mount box)
say "11. save, load into another store: same image ID, same tree (save ${save_s}s, load ${load_s}s, $(stat -c %s "$WORK/image.tar") bytes)"
# Commit a change made in it, and check the new image's history and layers.
printf 'committed\n' >"$M3/extra/committed"
"$STRATA" -q --root "$OTHER" commit box "$IMG-commit" -m "demo commit"
layers=$("$STRATA" --json --root "$OTHER" inspect "$IMG-commit" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["layers"]))')
[ "$layers" = 2 ] || fail "the committed image has $layers layers, not 2"
changes=$("$STRATA" --root "$OTHER" layer changes box | tr '\n' ' ')
[ "$changes" = "C /extra A /extra/committed " ] || fail "the container's changes are '$changes', not the one file written"
"$STRATA" -q --root "$OTHER" layer umount box
"$STRATA" -q --root "$OTHER" layer rm box
"$STRATA" -q --root "$OTHER" fsck || fail "fsck of the second store is not clean"
say "12. commit: a container's change made a 2-layer image; fsck clean"

# Through a registry (Debian's docker-registry on a loopback port), to a third store.
REG_DIR=$WORK/registry
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'bash "$SHARED/testdata/registry.sh" stop "$REG_DIR" >/dev/null 2>&1 || true; image_cleanup; store_cleanup; cleanup' EXIT
bash "$SHARED/testdata/registry.sh" start "$REG_DIR" "$PORT" >/dev/null 2>&1 || die "the loopback registry did not start"
COMMIT_ID=$("$STRATA" --json --root "$OTHER" inspect "$IMG-commit" | json id)
REMOTE=127.0.0.1:$PORT/demo/sample:1
t=$(now)
"$STRATA" -q --root "$OTHER" push "$IMG-commit" "$REMOTE"
push_s=$(since "$t")
THIRD=$WORK/third-store
t=$(now)
"$STRATA" -q --root "$THIRD" pull "$REMOTE"
pull_s=$(since "$t")
got=$("$STRATA" --json --root "$THIRD" inspect "$REMOTE" | json id)
[ "$got" = "$COMMIT_ID" ] || fail "the pulled image is $got, not $COMMIT_ID"
# (--json also writes progress events to stderr: kept aside, shown if the push fails.)
"$STRATA" --json --root "$OTHER" push "$IMG-commit" "$REMOTE" >"$WORK/push2.json" 2>"$WORK/push2.events" || { tail -n 5 "$WORK/push2.events" >&2; fail "the second push failed"; }
again=$(python3 -c 'import json, sys; print(sum(not l["reused"] for l in json.load(sys.stdin)["images"][0]["layers"]))' <"$WORK/push2.json")
[ "$again" = 0 ] || fail "the second push sent $again layers again"
"$STRATA" -q --root "$THIRD" fsck || fail "fsck of the third store is not clean"
say "13. push, pull into a third store: same image ID; a second push sends no layer (push ${push_s}s, pull ${pull_s}s)"

echo "strata: $(json entries <"$WORK/unpack.json") entries, $bytes bytes: pack ${pack_s}s, unpack ${unpack_s}s, repack ${repack_s}s, apply ${apply_s}s, import-dir ${build_s}s, save ${save_s}s, load ${load_s}s, push ${push_s}s, pull ${pull_s}s"
echo "demo OK: pack -> unpack -> repack bit-exact -> store apply, container, changes, commit -> image built, saved, loaded elsewhere, committed, pushed, pulled ($IMAGE_ID)"
