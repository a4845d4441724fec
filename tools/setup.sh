#!/usr/bin/env bash
# One-step setup on a fresh machine with Python 3.11: system packages (when missing), a virtual
# environment in .venv, the project and its pinned requirements.
#   bash tools/setup.sh          runtime: what the app and the CLI need
#   bash tools/setup.sh --dev    plus what the tests need (pytest, ruff, gradio_client, Playwright
#                                driving Debian's Chromium, espeak-ng for the built-in corpus; for the
#                                export tests pygltflib, the Khronos glTF validator from npm into
#                                tools/node_modules, and Blender's bpy in tools/blender-venv: ~1 GB, ~70 s)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libegl1 libgl1-mesa-dri libgles2)   # offscreen OpenGL (EGL through Mesa) for rendering
requirements=requirements.txt
if [[ "${1:-}" == "--dev" ]]; then
  packages+=(espeak-ng chromium nodejs)
  command -v npm >/dev/null || packages+=(npm)   # NodeSource's nodejs brings its own npm
  requirements=requirements-dev.txt
fi

missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -eq 0 ]]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: please install these system packages: ${missing[*]}" >&2; exit 1; fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r "$requirements" -e .
if [[ "${1:-}" == "--dev" ]]; then   # the export tests' other readers (tests/test_export.py)
  npm ci --prefix tools --no-audit --no-fund --silent   # gltf-validator, pinned in tools/package(-lock).json
  # Blender as a module: bpy 4.5 LTS needs numpy < 2, so it gets an environment of its own.
  python3 -m venv tools/blender-venv
  tools/blender-venv/bin/pip install -q --disable-pip-version-check bpy==4.5.4
fi
echo "setup: done (.venv)"
