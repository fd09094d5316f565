#!/usr/bin/env bash
# Installs AtomLens with everything it needs into ./.venv: the CPU build of PyTorch
# pinned by constraints.txt, the package (editable) with its testing extra, and, when
# run as root on Debian, the X libraries napari needs under Xvfb. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  pkgs="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0
        libxcb-xkb1 libxkbcommon-x11-0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 libdbus-1-3
        libfontconfig1 libegl1 libgl1 libglib2.0-0"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing" >&2
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >&2
.venv/bin/python -m pip install -q -c constraints.txt -e ".[testing]" >&2
echo "setup: AtomLens installed in $(pwd)/.venv" >&2
