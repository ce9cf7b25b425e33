#!/usr/bin/env bash
# Copies mmalign's header-only dependencies — Eigen3, xtensor, xtl, nlohmann-json and doctest,
# headers and CMake package files — from this machine's /usr into deps/ (git-ignored), so that a
# machine without Debian packages (the GPU machine: nvcc, CMake, Ninja and PyTorch only) can build
# mmalign with `cmake -DCMAKE_PREFIX_PATH=$PWD/deps`.
#
# Every package file is kept at its path relative to the prefix, which is how the files find their
# headers (they go up from their own location), and any prefix written into them literally is
# replaced by one computed from their location; the script fails if a copied package file still
# names /usr. Result: about 15 MiB.
# Usage: scripts/vendor-deps.sh [dest]   (default: deps)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-deps}
src=${MMALIGN_DEPS_SOURCE:-/usr}
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)

need() { [ -e "$src/$1" ] || { echo "vendor-deps: $src/$1 is missing (run scripts/install-deps.sh first)" >&2; exit 1; }; }
need include/eigen3/Eigen/Core
need include/xtensor
need include/xtl
need include/nlohmann/json.hpp
need include/doctest/doctest.h

rm -rf "$dest"
mkdir -p "$dest/include"

# Headers. Eigen: Eigen/ and unsupported/ (backend/cpu/activation.hpp includes
# <unsupported/Eigen/SpecialFunctions> for the portable erf).
mkdir -p "$dest/include/eigen3"
cp -a "$src/include/eigen3/Eigen" "$src/include/eigen3/unsupported" "$dest/include/eigen3/"
[ -e "$src/include/eigen3/signature_of_eigen3_matrix_library" ] &&
  cp -a "$src/include/eigen3/signature_of_eigen3_matrix_library" "$dest/include/eigen3/"
cp -a "$src/include/xtensor" "$src/include/xtl" "$src/include/nlohmann" "$src/include/doctest" "$dest/include/"
[ -e "$src/include/xtensor.hpp" ] && cp -a "$src/include/xtensor.hpp" "$dest/include/"

# CMake package directories, at the same paths below the prefix.
copied=()
for pkg in eigen3/cmake cmake/xtensor cmake/xtl cmake/nlohmann_json cmake/doctest; do
  for base in share lib "lib/$arch"; do
    if [ -d "$src/$base/$pkg" ]; then
      mkdir -p "$dest/$base/$(dirname "$pkg")"
      cp -a "$src/$base/$pkg" "$dest/$base/$(dirname "$pkg")/"
      copied+=("$base/$pkg")
    fi
  done
done
for want in eigen3/cmake xtensor xtl nlohmann_json doctest; do
  printf '%s\n' "${copied[@]}" | grep -q "$want\$" || { echo "vendor-deps: no CMake package files for $want under $src" >&2; exit 1; }
done

# A package file that hard-codes its prefix (doctest's targets file: set(_IMPORT_PREFIX "/usr"))
# gets the prefix computed from its own location instead: as many directories up as it lies deep.
for dir in "${copied[@]}"; do
  depth=$(awk -F/ '{print NF}' <<<"$dir")
  up=""
  for _ in $(seq 1 "$depth"); do up="$up/.."; done
  for f in "$dest/$dir"/*.cmake; do
    if grep -q "set(_IMPORT_PREFIX \"$src\")" "$f"; then
      sed -i "s|set(_IMPORT_PREFIX \"$src\")|get_filename_component(_IMPORT_PREFIX \"\${CMAKE_CURRENT_LIST_DIR}$up\" ABSOLUTE)|" "$f"
    fi
    if grep -q "set(PACKAGE_PREFIX_DIR \"$src\")" "$f"; then
      sed -i "s|set(PACKAGE_PREFIX_DIR \"$src\")|get_filename_component(PACKAGE_PREFIX_DIR \"\${CMAKE_CURRENT_LIST_DIR}$up\" ABSOLUTE)|" "$f"
    fi
  done
done

# No package file may still point into the source prefix's include directory or set it as prefix.
if grep -rnE "\"$src(/include[^\"]*)?\"|$src/include" "$dest"/share "$dest"/lib 2>/dev/null | grep -v "_realOrig" ; then
  echo "vendor-deps: the package files above still name $src" >&2
  exit 1
fi

echo "vendor-deps: $(du -sh "$dest" | cut -f1) in $dest (prefix for CMAKE_PREFIX_PATH: $(cd "$dest" && pwd))"
