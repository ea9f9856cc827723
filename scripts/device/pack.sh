#!/usr/bin/env bash
# Pack the benchmark for a lent GPU machine (see ../shared/docs/GPU-DEVICE.md): that machine has no
# Node and no npm registry, so this bundles the benchmark, the shaders, Dawn's dawn.node and this
# machine's node binary into .carry/bench (git-ignored, under the device tool's 64 MiB carry limit).
# Then, with the device tool: carry [".carry/bench", ".gl"] and run `bash .carry/bench/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.carry/bench
rm -rf "$out" && mkdir -p "$out/src/bench" "$out/node_modules/webgpu/dist/linux-x64"
# The bundle sits at src/bench/ so that gpu/node.ts finds ../../shaders/ beside it.
npx esbuild src/bench/main.ts --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --outfile="$out/src/bench/main.mjs" --log-level=warning
cp -r shaders "$out/shaders"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$out/node_modules/webgpu/"
xz -T0 -c node_modules/webgpu/dist/linux-x64/dawn.node > "$out/node_modules/webgpu/dist/linux-x64/dawn.node.xz"
xz -T0 -c "$(command -v node)" > "$out/node.xz"
cp scripts/device/run.sh scripts/device/torch_peer_train.py "$out/"
# The Vulkan loader (libvulkan1) that the device machine may lack, as .deb files to unpack there.
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1 >/dev/null)
fi
du -sh "$out" .gl
