#!/usr/bin/env bash
# System libraries the tests need (Qt's offscreen platform plugin, fonts, Xvfb for the window
# test of `make run`, headless Chromium for the world service's browser viewer). Installed
# once; a no-op when already present or when not root.
set -u
need=()
for pkg in libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fonts-dejavu-core xvfb \
           libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-cursor0 \
           libxkbcommon-x11-0 libxcb-xinerama0 libxcb-shape0 chromium-headless-shell; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages (install them as root): ${need[*]}" >&2
  exit 0
fi
echo "installing system packages: ${need[*]}"
apt-get update -qq >/dev/null && \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
