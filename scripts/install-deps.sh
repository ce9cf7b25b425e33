#!/usr/bin/env bash
# Installs what building and testing mmalign needs on Debian 12 (bookworm) or later.
# Runs apt-get only when a package is missing; uses sudo when not run as root.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config
          libeigen3-dev libxtensor-dev doctest-dev nlohmann-json3-dev libopenblas-dev
          libjpeg62-turbo-dev libpng-dev zlib1g-dev dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
