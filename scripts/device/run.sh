#!/usr/bin/env bash
# Runs on the lent GPU machine (from the repository root there): unpack the Vulkan loader, Node and
# Dawn, then run the benchmark on the real GPU and leave its JSON in $OUT; with TORCH_PEER=1 also the same
# training steps in PyTorch on CUDA (torch_peer_train.py) for side-by-side ratios.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
here=.carry/bench
python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$here/node.xz" /tmp/node && chmod +x /tmp/node
python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" \
  "$here/node_modules/webgpu/dist/linux-x64/dawn.node.xz" "$here/node_modules/webgpu/dist/linux-x64/dawn.node"
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
cd "$here" && /tmp/node src/bench/main.mjs --json "$@" > "$OUT/bench.json" 2> "$OUT/bench.log"
status=$?
tail -20 "$OUT/bench.log"
if [ "${TORCH_PEER:-0}" = 1 ]; then
  python3 torch_peer_train.py > "$OUT/torch-peer.json" 2> "$OUT/torch-peer.log"; tail -3 "$OUT/torch-peer.log"; cat "$OUT/torch-peer.json"
fi
exit $status
