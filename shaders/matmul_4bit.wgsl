// Fused dequantize-and-multiply kernels for a frozen 4-bit weight W [OUT, IN] in bitsandbytes' layout
// (src/quant/quantState.ts). The dequantized weight never exists in global memory: each kernel decodes
// W[o, i] = code[q] · absmax[(o · IN + i) / BLOCK] where it is needed. Blocks are runs of the flattened
// weight, so a block may span two rows when IN is not a multiple of BLOCK.
//   forward:        Y [R, OUT] = X [R, IN] · Wᵀ (+ bias)
//   backward-input: dX [R, IN] = dY [R, OUT] · W
// Two paths: GEMV kernels for R ≤ MAX_ROWS (generation, one token per sequence), and a tiled GEMM that
// decodes a TILE_K × TILE_N tile of W into workgroup memory once and reuses it for TILE_M rows.
// f32 accumulation throughout.
//
// Double quantization: the absmax of a block is decoded on the fly as
// nested_map[q8] · absmax2[block / NESTED] + offset. It costs two extra loads per decoded element
// (cached: all elements of a block share them), far less than expanding the absmax into a temporary
// f32 buffer in a separate pass before every call, and it keeps the 0.127 bit/param footprint.

const MAX_ROWS: u32 = 8u;
const GEMV_THREADS: u32 = 64u;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREAD_ROWS: u32 = 4u;
const THREAD_COLS: u32 = 4u;
const GEMM_THREADS_X: u32 = 16u;  // TILE_N / THREAD_COLS
const GEMM_THREADS_Y: u32 = 16u;  // TILE_M / THREAD_ROWS
const GEMM_THREADS: u32 = 256u;

struct Params {
  rows: u32,          // R
  in_features: u32,   // IN
  out_features: u32,  // OUT
  block_shift: u32,   // log2(BLOCK)
  nested: u32,        // 1 when the absmax is double-quantized
  nested_shift: u32,  // log2(NESTED), the blocks per absmax2 entry
  offset: f32,        // nested offset (mean of the absmax)
  has_bias: u32,
  forward: u32,       // GEMM: 1 for Y = X · Wᵀ, 0 for dX = dY · W
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;          // X [R, IN] or dY [R, OUT]
@group(0) @binding(2) var<storage, read> packed: array<u32>;         // 8 codes per word, high nibble first in each byte
@group(0) @binding(3) var<storage, read> absmax: array<u32>;         // f32 bits per block, or 4 8-bit codes per word when nested
@group(0) @binding(4) var<storage, read> nested_absmax: array<f32>;  // absmax2 per NESTED blocks (any buffer when not nested)
@group(0) @binding(5) var<storage, read> tables: array<f32>;         // [0, 16): 4-bit code values; [16, 272): nested map
@group(0) @binding(6) var<storage, read> bias: array<f32>;           // [OUT] (any buffer when has_bias is 0)
@group(0) @binding(7) var<storage, read_write> output: array<f32>;   // Y [R, OUT], dX [R, IN], or dbias [OUT]

fn block_scale(block: u32) -> f32 {
  if (params.nested == 0u) { return bitcast<f32>(absmax[block]); }
  let q = (absmax[block >> 2u] >> ((block & 3u) * 8u)) & 0xffu;
  return tables[16u + q] * nested_absmax[block >> params.nested_shift] + params.offset;
}

// W at flat index f = o · IN + i.
fn weight_at(f: u32) -> f32 {
  let byte = (packed[f >> 3u] >> (((f >> 1u) & 3u) * 8u)) & 0xffu;
  let q = select(byte & 0xfu, byte >> 4u, (f & 1u) == 0u);
  return tables[q] * block_scale(f >> params.block_shift);
}

var<workgroup> partial: array<f32, 512>;  // MAX_ROWS × GEMV_THREADS

// GEMV forward: one workgroup per output feature o; threads stride over IN, then reduce.
// Grid: OUT workgroups, o = x + y · num_workgroups.x.
@compute @workgroup_size(GEMV_THREADS)
fn gemv_forward(@builtin(local_invocation_id) local: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>) {
  let o = group.x + group.y * groups.x;
  if (o >= params.out_features) { return; }
  let k_in = params.in_features;
  var acc: array<f32, MAX_ROWS>;
  let row_start = o * k_in;
  for (var i = local.x; i < k_in; i += GEMV_THREADS) {
    let w = weight_at(row_start + i);
    for (var r = 0u; r < params.rows; r++) { acc[r] = fma(input[r * k_in + i], w, acc[r]); }
  }
  for (var r = 0u; r < MAX_ROWS; r++) { partial[r * GEMV_THREADS + local.x] = acc[r]; }
  workgroupBarrier();
  for (var stride = GEMV_THREADS / 2u; stride > 0u; stride /= 2u) {
    if (local.x < stride) {
      for (var r = 0u; r < MAX_ROWS; r++) {
        partial[r * GEMV_THREADS + local.x] += partial[r * GEMV_THREADS + local.x + stride];
      }
    }
    workgroupBarrier();
  }
  if (local.x < params.rows) {
    var value = partial[local.x * GEMV_THREADS];
    if (params.has_bias != 0u) { value += bias[o]; }
    output[local.x * params.out_features + o] = value;
  }
}

// GEMV backward-input: one thread per input feature i, looping over OUT (adjacent threads read
// adjacent codes). Grid: ceil(IN / GEMV_THREADS) workgroups, spilling into y.
@compute @workgroup_size(GEMV_THREADS)
fn gemv_backward_input(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * GEMV_THREADS;
  let k_in = params.in_features;
  if (i >= k_in) { return; }
  let n_out = params.out_features;
  var acc: array<f32, MAX_ROWS>;
  for (var o = 0u; o < n_out; o++) {
    let w = weight_at(o * k_in + i);
    for (var r = 0u; r < params.rows; r++) { acc[r] = fma(input[r * n_out + o], w, acc[r]); }
  }
  for (var r = 0u; r < params.rows; r++) { output[r * k_in + i] = acc[r]; }
}

var<workgroup> a_tile: array<f32, 1024>;  // [k][m], TILE_K × TILE_M
var<workgroup> b_tile: array<f32, 1024>;  // [k][n], TILE_K × TILE_N: decoded weights

// Tiled GEMM: C [R, N] = A [R, K] · B [K, N] with B decoded from W: forward B(k, n) = W[n, k]
// (N = OUT, K = IN), backward-input B(k, n) = W[k, n] (N = IN, K = OUT). Each thread keeps a 4 × 4
// block of C. Grid: (ceil(N / TILE_N), ceil(R / TILE_M)).
@compute @workgroup_size(GEMM_THREADS_X, GEMM_THREADS_Y, 1)
fn gemm(@builtin(local_invocation_id) local: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>) {
  let thread = local.y * GEMM_THREADS_X + local.x;
  let forward = params.forward != 0u;
  let n_cols = select(params.in_features, params.out_features, forward);
  let k_inner = select(params.out_features, params.in_features, forward);
  let row0 = group.y * TILE_M;
  let col0 = group.x * TILE_N;

  var acc: array<array<f32, THREAD_COLS>, THREAD_ROWS>;
  for (var k0 = 0u; k0 < k_inner; k0 += TILE_K) {
    for (var t = thread; t < TILE_M * TILE_K; t += GEMM_THREADS) {
      let m = row0 + t / TILE_K;
      let k = k0 + t % TILE_K;
      var value = 0.0;
      if (m < params.rows && k < k_inner) { value = input[m * k_inner + k]; }
      a_tile[(t % TILE_K) * TILE_M + t / TILE_K] = value;
    }
    // Decode the weight tile with adjacent threads on adjacent codes of W's rows.
    for (var t = thread; t < TILE_K * TILE_N; t += GEMM_THREADS) {
      var k: u32;
      var n: u32;
      if (forward) { k = t % TILE_K; n = t / TILE_K; } else { n = t % TILE_N; k = t / TILE_N; }
      var value = 0.0;
      if (col0 + n < n_cols && k0 + k < k_inner) {
        let f = select((k0 + k) * params.in_features + col0 + n, (col0 + n) * params.in_features + k0 + k, forward);
        value = weight_at(f);
      }
      b_tile[k * TILE_N + n] = value;
    }
    workgroupBarrier();
    for (var k = 0u; k < TILE_K; k++) {
      var a_reg: array<f32, THREAD_ROWS>;
      var b_reg: array<f32, THREAD_COLS>;
      for (var r = 0u; r < THREAD_ROWS; r++) { a_reg[r] = a_tile[k * TILE_M + local.y + r * GEMM_THREADS_Y]; }
      for (var c = 0u; c < THREAD_COLS; c++) { b_reg[c] = b_tile[k * TILE_N + local.x + c * GEMM_THREADS_X]; }
      for (var r = 0u; r < THREAD_ROWS; r++) {
        for (var c = 0u; c < THREAD_COLS; c++) { acc[r][c] = fma(a_reg[r], b_reg[c], acc[r][c]); }
      }
    }
    workgroupBarrier();
  }

  for (var r = 0u; r < THREAD_ROWS; r++) {
    let m = row0 + local.y + r * GEMM_THREADS_Y;
    if (m >= params.rows) { continue; }
    for (var c = 0u; c < THREAD_COLS; c++) {
      let n = col0 + local.x + c * GEMM_THREADS_X;
      if (n >= n_cols) { continue; }
      var value = acc[r][c];
      if (params.has_bias != 0u) { value += bias[n]; }
      output[m * n_cols + n] = value;
    }
  }
}

// Bias gradient: dbias[o] = Σ_r dY[r, o], one thread per o looping over rows (deterministic).
// Grid: ceil(OUT / GEMV_THREADS) workgroups, spilling into y.
@compute @workgroup_size(GEMV_THREADS)
fn bias_grad(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let o = id.x + id.y * groups.x * GEMV_THREADS;
  if (o >= params.out_features) { return; }
  var sum = 0.0;
  for (var r = 0u; r < params.rows; r++) { sum += input[r * params.out_features + o]; }
  output[o] = sum;
}
