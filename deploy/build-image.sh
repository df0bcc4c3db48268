#!/bin/sh
# Build the orbitwatch image from the repository root: copy the schema contract into the build
# context (deploy/contract, git-ignored), then build deploy/Dockerfile.
#   usage: deploy/build-image.sh [TAG]        (default orbitwatch:0.1.0)
#   CONTRACT_DIR=/path/to/contract deploy/build-image.sh   to take the contract from elsewhere
set -eu
tag="${1:-orbitwatch:0.1.0}"
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
contract="${CONTRACT_DIR:-$repo_root/../shared/contract}"
if [ ! -f "$contract/registry.json" ]; then
    echo "no registry.json in $contract: set CONTRACT_DIR to the schema contract" >&2
    exit 1
fi
cd "$repo_root"
rm -rf deploy/contract
cp -r "$contract" deploy/contract
DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t "$tag" .
