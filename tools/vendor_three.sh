#!/usr/bin/env bash
# Refresh assets/vendor/three/ (the 3D player's three.js, served by the app itself: no CDN) from the npm
# registry:
#
#     bash tools/vendor_three.sh            # three@0.187.0, the version the player is written against
#     bash tools/vendor_three.sh 0.188.0    # another release: then check the player (tests/test_player.py)
#
# three's npm package no longer ships minified builds, and its addons import the bare name 'three', which
# a page can only resolve through an import map. So the script bundles what the player needs into one
# minified ES module with esbuild (an npm build tool, used here only): the whole `three` namespace plus
# GLTFLoader and OrbitControls (and the two addon utilities GLTFLoader imports). 0.8 MB instead of the
# 2.3 MB of the unminified files, one request instead of six. three's licence header is kept in the file;
# LICENSE and NOTICE go beside it.
set -euo pipefail

VERSION="${1:-0.187.0}"
ESBUILD_VERSION="0.28.2"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/assets/vendor/three"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "three@$VERSION" >/dev/null
INTEGRITY="$(npm view "three@$VERSION" dist.integrity)"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund --ignore-scripts "esbuild@$ESBUILD_VERSION" "./three-$VERSION.tgz"

cat > entry.js <<'EOF'
export * from 'three';
export { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
export { OrbitControls } from 'three/addons/controls/OrbitControls.js';
EOF
npx --no-install esbuild entry.js --bundle --minify --format=esm --legal-comments=inline \
    --log-level=warning --outfile=three.bundle.min.js

mkdir -p "$OUT"
cp three.bundle.min.js "$OUT/three.bundle.min.js"
cp node_modules/three/LICENSE "$OUT/LICENSE"
cat > "$OUT/NOTICE" <<EOF
three.js $VERSION -- https://threejs.org, https://github.com/mrdoob/three.js
Copyright © 2010-2026 three.js authors. MIT License: see LICENSE in this folder.

three.bundle.min.js is built by tools/vendor_three.sh from the npm package three@$VERSION
(npm integrity $INTEGRITY):
its build/three.module.js (with build/three.core.js), examples/jsm/loaders/GLTFLoader.js,
examples/jsm/controls/OrbitControls.js and the two files GLTFLoader imports
(examples/jsm/utils/BufferGeometryUtils.js, examples/jsm/utils/SkeletonUtils.js), bundled and
minified into one ES module by esbuild $ESBUILD_VERSION, unmodified otherwise. It exports the whole
three namespace plus GLTFLoader and OrbitControls. Run the script again to refresh it.
EOF
echo "assets/vendor/three: three@$VERSION, $(wc -c < "$OUT/three.bundle.min.js") bytes"
