#!/usr/bin/env bash
# Runs on the lent GPU machine (from the repository root there): unpack the Vulkan loader, Node and
# Dawn, then run the benchmark on the real GPU and leave its JSON in $OUT.
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
exit $status
