#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian/Ubuntu machine that has the CUDA
# toolkit: OpenMPI (optional for the build, needed for multi-GPU runs) and the Python packages
# of dev/requirements.txt (data preparation and its tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! command -v mpicc >/dev/null 2>&1; then
    echo "setup: installing OpenMPI (libopenmpi-dev openmpi-bin)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenmpi-dev openmpi-bin >/dev/null
fi
echo "setup: installing Python packages from dev/requirements.txt"
python3 -m pip install -q --disable-pip-version-check -r dev/requirements.txt
