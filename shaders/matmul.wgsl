// Batched matrix multiply: C[b] = alpha * op(A[b]) · op(B[b]) + beta * C[b], f32 accumulation.
// op(A) is [M, K] and op(B) is [K, N]; transposes, batch broadcasting and layouts are expressed as
// element strides, so one kernel serves every transpose combination.
// Tiling: a workgroup computes a TILE_M x TILE_N block of C, staging TILE_K-wide slices of A and B
// in workgroup memory; each thread keeps a 4 x 4 block of results in registers.
// Grid: (ceil(N / TILE_N), ceil(M / TILE_M), batch).

override TILE_M: u32 = 64;
override TILE_N: u32 = 64;
override TILE_K: u32 = 16;
const THREAD_ROWS: u32 = 4u;
const THREAD_COLS: u32 = 4u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  a_batch_stride: u32,   // 0 when A is shared by every batch
  a_stride_m: u32,
  a_stride_k: u32,
  b_batch_stride: u32,   // 0 when B is shared by every batch
  b_stride_k: u32,
  b_stride_n: u32,
  alpha: f32,
  beta: f32,             // 0: overwrite C; 1: accumulate into C
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Sized by a constant, not by TILE_M * TILE_K: Dawn on SwiftShader crashes when both the workgroup
// size and workgroup arrays depend on overrides. Tiles may use up to this many elements each.
const TILE_CAPACITY: u32 = 2048u;
var<workgroup> a_tile: array<f32, TILE_CAPACITY>;  // [k][m], TILE_K x TILE_M used
var<workgroup> b_tile: array<f32, TILE_CAPACITY>;  // [k][n], TILE_K x TILE_N used

@compute @workgroup_size(TILE_N / THREAD_COLS, TILE_M / THREAD_ROWS, 1)
fn matmul(@builtin(local_invocation_id) local: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>) {
  let threads_x = TILE_N / THREAD_COLS;
  let threads = threads_x * (TILE_M / THREAD_ROWS);
  let thread = local.y * threads_x + local.x;
  let batch = group.z;
  let row0 = group.y * TILE_M;
  let col0 = group.x * TILE_N;
  let a_base = batch * params.a_batch_stride;
  let b_base = batch * params.b_batch_stride;

  var acc: array<array<f32, THREAD_COLS>, THREAD_ROWS>;
  for (var k0 = 0u; k0 < params.K; k0 += TILE_K) {
    for (var i = thread; i < TILE_M * TILE_K; i += threads) {
      let m = row0 + i / TILE_K;
      let k = k0 + i % TILE_K;
      var value = 0.0;
      if (m < params.M && k < params.K) { value = a[a_base + m * params.a_stride_m + k * params.a_stride_k]; }
      a_tile[(i % TILE_K) * TILE_M + i / TILE_K] = value;
    }
    for (var i = thread; i < TILE_K * TILE_N; i += threads) {
      let n = col0 + i % TILE_N;
      let k = k0 + i / TILE_N;
      var value = 0.0;
      if (n < params.N && k < params.K) { value = b[b_base + k * params.b_stride_k + n * params.b_stride_n]; }
      b_tile[i] = value;
    }
    workgroupBarrier();
    for (var k = 0u; k < TILE_K; k++) {
      var a_reg: array<f32, THREAD_ROWS>;
      var b_reg: array<f32, THREAD_COLS>;
      for (var r = 0u; r < THREAD_ROWS; r++) { a_reg[r] = a_tile[k * TILE_M + local.y + r * (TILE_M / THREAD_ROWS)]; }
      for (var col = 0u; col < THREAD_COLS; col++) { b_reg[col] = b_tile[k * TILE_N + local.x + col * threads_x]; }
      for (var r = 0u; r < THREAD_ROWS; r++) {
        for (var col = 0u; col < THREAD_COLS; col++) { acc[r][col] = fma(a_reg[r], b_reg[col], acc[r][col]); }
      }
    }
    workgroupBarrier();
  }

  let c_base = batch * params.M * params.N;
  for (var r = 0u; r < THREAD_ROWS; r++) {
    let m = row0 + local.y + r * (TILE_M / THREAD_ROWS);
    if (m >= params.M) { continue; }
    for (var col = 0u; col < THREAD_COLS; col++) {
      let n = col0 + local.x + col * threads_x;
      if (n >= params.N) { continue; }
      let index = c_base + m * params.N + n;
      var value = params.alpha * acc[r][col];
      if (params.beta != 0.0) { value += params.beta * c[index]; }
      c[index] = value;
    }
  }
}

// Direct variant, for software adapters (CPU emulations of a GPU): no workgroup memory
// and no barriers (a barrier costs a context switch per invocation on a CPU emulation). Each thread
// computes a 4 x 4 block of C straight from global memory.
// Grid: 1-D over ceil(M / 4) · ceil(N / 4) blocks (spilling into y), z = batch.
const DIRECT_WORKGROUP: u32 = 64u;

@compute @workgroup_size(DIRECT_WORKGROUP)
fn matmul_direct(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let blocks_n = (params.N + THREAD_COLS - 1u) / THREAD_COLS;
  let blocks_m = (params.M + THREAD_ROWS - 1u) / THREAD_ROWS;
  let block = id.x + id.y * groups.x * DIRECT_WORKGROUP;
  if (block >= blocks_m * blocks_n) { return; }
  let batch = id.z;
  let row0 = (block / blocks_n) * THREAD_ROWS;
  let col0 = (block % blocks_n) * THREAD_COLS;
  let a_base = batch * params.a_batch_stride;
  let b_base = batch * params.b_batch_stride;

  var acc: array<array<f32, THREAD_COLS>, THREAD_ROWS>;
  for (var k = 0u; k < params.K; k++) {
    var a_reg: array<f32, THREAD_ROWS>;
    var b_reg: array<f32, THREAD_COLS>;
    for (var r = 0u; r < THREAD_ROWS; r++) {
      let m = row0 + r;
      if (m < params.M) { a_reg[r] = a[a_base + m * params.a_stride_m + k * params.a_stride_k]; }
    }
    for (var col = 0u; col < THREAD_COLS; col++) {
      let n = col0 + col;
      if (n < params.N) { b_reg[col] = b[b_base + k * params.b_stride_k + n * params.b_stride_n]; }
    }
    for (var r = 0u; r < THREAD_ROWS; r++) {
      for (var col = 0u; col < THREAD_COLS; col++) { acc[r][col] = fma(a_reg[r], b_reg[col], acc[r][col]); }
    }
  }

  let c_base = batch * params.M * params.N;
  for (var r = 0u; r < THREAD_ROWS; r++) {
    let m = row0 + r;
    if (m >= params.M) { continue; }
    for (var col = 0u; col < THREAD_COLS; col++) {
      let n = col0 + col;
      if (n >= params.N) { continue; }
      let index = c_base + m * params.N + n;
      var value = params.alpha * acc[r][col];
      if (params.beta != 0.0) { value += params.beta * c[index]; }
      c[index] = value;
    }
  }
}
