#!/usr/bin/env bash
# Fetches the prebuilt OHIF viewer (npm @ohif/app, MIT) and unpacks its deployable build
# (package/dist) into var/ohif/<version>/ at the repository root, which `vesalius serve` serves
# at `/`. The tarball is checked against the registry's sha512 integrity before unpacking.
# Idempotent: a stamp file records a completed unpack of the pinned version.
set -euo pipefail

VERSION=3.13.2  # keep in step with OHIF_VERSION in vesalius/web/viewer.py
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/var/ohif/$VERSION"
STAMP="$DEST/.vesalius-ohif-stamp"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "@ohif/app@$VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-ohif: npm is missing; install Node.js/npm (Debian: apt-get install npm) and run 'make viewer' again" >&2
  exit 1
fi

mkdir -p "$ROOT/var/ohif"
TMP="$(mktemp -d "$ROOT/var/ohif/.fetch.XXXXXX")"  # same file system: the final mv is a rename
trap 'rm -rf "$TMP"' EXIT

echo "fetch-ohif: fetching @ohif/app@$VERSION (about 50 MB) ..." >&2
expected="$(npm view "@ohif/app@$VERSION" dist.integrity)"
case "$expected" in
  sha512-*) ;;
  *) echo "fetch-ohif: npm gave no sha512 integrity for @ohif/app@$VERSION (got: '$expected')" >&2; exit 1 ;;
esac
tarball="$(cd "$TMP" && npm pack --silent "@ohif/app@$VERSION" | tail -n 1)"
# node is there wherever npm is (openssl may not be).
actual="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512")
  .update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$TMP/$tarball")"
if [ "$actual" != "$expected" ]; then
  echo "fetch-ohif: integrity mismatch for $tarball: expected $expected, got $actual" >&2
  exit 1
fi

mkdir -p "$TMP/x"
# -m: fresh mtimes (npm stores 1985 for all), so ETags and Last-Modified change with each version.
tar -xzmf "$TMP/$tarball" -C "$TMP/x" package/dist
if [ ! -f "$TMP/x/package/dist/index.html" ]; then
  echo "fetch-ohif: package/dist/index.html missing from $tarball" >&2
  exit 1
fi
# Our server generates app-config.js; drop the upstream one (it points at a public demo server).
rm -f "$TMP/x/package/dist/app-config.js"

rm -rf "$DEST"
mv "$TMP/x/package/dist" "$DEST"
echo "@ohif/app@$VERSION" > "$STAMP"
echo "fetch-ohif: OHIF $VERSION in ${DEST#"$ROOT"/}" >&2
