// LoRA's low-rank products (ops/lora.ts): the branch s · B(A x) added into a base layer's output, its
// gradients, and merging s · B A into the base weight. T tokens, I in-features, O out-features, R the
// rank (1–64 typically); x [T, I], A [R, I], B [O, R], h = x Aᵀ [T, R], dY [T, O], g = s · dY B [T, R].
// Every one of them is C [M, N] = alpha · op(L) [M, K] · op(Q) [K, N] + beta · C with the operands'
// layouts given as element strides (the host sends those with an output wide both ways and a short K,
// marked *, to the big-tile GEMM of matmul.wgsl when T is large):
//   forward   h  = x · Aᵀ          M = T, N = R, K = I   narrow output, long inner
//             y += s · h · Bᵀ      M = T, N = O, K = R   wide output, short inner *
//   backward  g  = s · dY · B      M = T, N = R, K = O
//             dx = g · A           M = T, N = I, K = R   *
//             dA = gᵀ · x          M = R, N = I, K = T   small output, inner over the tokens
//             dB = s · dYᵀ · h     M = O, N = R, K = T
//   merge     W ±= s · B · A       M = O, N = I, K = R   * (W [I, O] ±= s · Aᵀ · Bᵀ for fan_in_fan_out)
// A square 64 x 64 tile leaves most of its threads idle when one side is R, and a long inner loop in
// a handful of workgroups leaves most of the GPU idle. So the host fits the tile to M and N and
// splits a long K into chunks: `product_partial` writes one partial product per chunk and
// `sum_partials` adds the chunks in a fixed order (deterministic, no float atomics).
// The tile shape is a uniform, not an override constant, so that one compiled pipeline serves every
// shape (each pipeline takes seconds to compile on a software adapter). A workgroup is THREADS
// threads, each keeping a CELL x CELL block of C in registers, so a tile holds THREADS · CELL² outputs:
// tile_m x tile_n is 8 x 128, 16 x 64, 32 x 32, 64 x 16 or 128 x 8. tile_k-wide slices of both
// operands are staged in workgroup memory, loaded along whichever index is contiguous in memory.
// These products are small and latency bound, so the kernel favours many threads with few outputs
// each, and loads with a constant trip count (unrolled, so a thread's loads are in flight together).
// Grid of the products: (ceil(N / tile_n), ceil(M / tile_m), chunks); of sum_partials: 1-D over M · N.

const THREADS: u32 = 256u;
const CELL: u32 = 2u;
const SUM_WORKGROUP_SIZE: u32 = 256u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  l_stride_m: u32,
  l_stride_k: u32,
  q_stride_k: u32,
  q_stride_n: u32,
  k_per_chunk: u32,   // a multiple of tile_k; at least K when there is one chunk
  chunks: u32,
  tile_m: u32,        // tile_m · tile_n = THREADS · CELL²; both multiples of CELL, at most 128
  tile_n: u32,
  tile_k: u32,        // 1 ... 16
  alpha: f32,
  beta: f32,          // 0: overwrite C (never read); otherwise C is read and scaled
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> l: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;  // [chunks, M, N]

const TILE_CAPACITY: u32 = 2048u;  // 16 x 128
const LOADS_PER_THREAD: u32 = TILE_CAPACITY / THREADS;
var<workgroup> l_tile: array<f32, TILE_CAPACITY>;  // [k][m], tile_k x tile_m used
var<workgroup> q_tile: array<f32, TILE_CAPACITY>;  // [k][n], tile_k x tile_n used

alias Cell = array<array<f32, CELL>, CELL>;

// Where a thread's cell lies in C: rows row0 + i · row_step, columns col0 + j · col_step (strided, so
// neighbouring threads store to neighbouring addresses).
struct CellPosition {
  row0: u32,
  col0: u32,
  row_step: u32,
  col_step: u32,
}

fn cell_position(thread: u32, group: vec3<u32>) -> CellPosition {
  let threads_x = params.tile_n / CELL;
  return CellPosition(
    group.y * params.tile_m + thread / threads_x,
    group.x * params.tile_n + thread % threads_x,
    params.tile_m / CELL,
    threads_x,
  );
}

// op(L) · op(Q) over this workgroup's chunk of K, for the thread's cell.
fn tile_product(thread: u32, group: vec3<u32>) -> Cell {
  let tile_m = params.tile_m;
  let tile_n = params.tile_n;
  let tile_k = params.tile_k;
  let threads_x = tile_n / CELL;
  let local_row = thread / threads_x;
  let local_col = thread % threads_x;
  let row0 = group.y * tile_m;
  let col0 = group.x * tile_n;
  let k_begin = group.z * params.k_per_chunk;
  let k_end = min(params.K, k_begin + params.k_per_chunk);
  let l_k_contiguous = params.l_stride_k == 1u;
  let q_n_contiguous = params.q_stride_n == 1u;

  var acc: Cell;
  for (var k0 = k_begin; k0 < k_end; k0 += tile_k) {
    for (var load = 0u; load < LOADS_PER_THREAD; load++) {
      let i = thread + load * THREADS;
      if (i < tile_m * tile_k) {
        // Neighbouring threads read neighbouring addresses: along k when L's rows are contiguous.
        let m_local = select(i % tile_m, i / tile_k, l_k_contiguous);
        let k_local = select(i / tile_m, i % tile_k, l_k_contiguous);
        let m = row0 + m_local;
        let k = k0 + k_local;
        var value = 0.0;
        if (m < params.M && k < k_end) { value = l[m * params.l_stride_m + k * params.l_stride_k]; }
        l_tile[k_local * tile_m + m_local] = value;
      }
    }
    for (var load = 0u; load < LOADS_PER_THREAD; load++) {
      let i = thread + load * THREADS;
      if (i < tile_k * tile_n) {
        let n_local = select(i / tile_k, i % tile_n, q_n_contiguous);
        let k_local = select(i % tile_k, i / tile_n, q_n_contiguous);
        let n = col0 + n_local;
        let k = k0 + k_local;
        var value = 0.0;
        if (n < params.N && k < k_end) { value = q[k * params.q_stride_k + n * params.q_stride_n]; }
        q_tile[k_local * tile_n + n_local] = value;
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < tile_k; k++) {
      var l_reg: array<f32, CELL>;
      var q_reg: array<f32, CELL>;
      for (var i = 0u; i < CELL; i++) { l_reg[i] = l_tile[k * tile_m + local_row + i * (tile_m / CELL)]; }
      for (var j = 0u; j < CELL; j++) { q_reg[j] = q_tile[k * tile_n + local_col + j * threads_x]; }
      for (var i = 0u; i < CELL; i++) {
        for (var j = 0u; j < CELL; j++) { acc[i][j] = fma(l_reg[i], q_reg[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  return acc;
}

// Marks a cell entry past C's edge; never a real index, as C's u32 indices m · N + n stay below it.
const OUTSIDE: u32 = 0xffffffffu;

// m · N + n for entry (i, j) of the thread's cell, or OUTSIDE in a tile that overhangs C.
fn cell_index(at: CellPosition, i: u32, j: u32) -> u32 {
  let m = at.row0 + i * at.row_step;
  let n = at.col0 + j * at.col_step;
  if (m >= params.M || n >= params.N) { return OUTSIDE; }
  return m * params.N + n;
}

// C[index] = alpha · sum + beta · C[index]; C is not read when beta is 0.
fn store_output(index: u32, sum: f32) {
  var value = params.alpha * sum;
  if (params.beta != 0.0) { value = fma(params.beta, c[index], value); }
  c[index] = value;
}

// C = alpha · op(L) · op(Q) + beta · C, the whole of K in one workgroup (chunks = 1).
@compute @workgroup_size(THREADS)
fn product(@builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let acc = tile_product(thread, group);
  let at = cell_position(thread, group);
  for (var i = 0u; i < CELL; i++) {
    for (var j = 0u; j < CELL; j++) {
      let index = cell_index(at, i, j);
      if (index != OUTSIDE) { store_output(index, acc[i][j]); }
    }
  }
}

// partials[chunk] = op(L) · op(Q) over this chunk's slice of K (group.z is the chunk).
@compute @workgroup_size(THREADS)
fn product_partial(@builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let acc = tile_product(thread, group);
  let at = cell_position(thread, group);
  let base = group.z * params.M * params.N;
  for (var i = 0u; i < CELL; i++) {
    for (var j = 0u; j < CELL; j++) {
      let index = cell_index(at, i, j);
      if (index != OUTSIDE) { partials[base + index] = acc[i][j]; }
    }
  }
}

// C = alpha · Σ_chunk partials[chunk] + beta · C, chunks added in order by the thread that owns the output.
@compute @workgroup_size(SUM_WORKGROUP_SIZE)
fn sum_partials(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let index = id.x + id.y * groups.x * SUM_WORKGROUP_SIZE;
  let size = params.M * params.N;
  if (index >= size) { return; }
  var sum = 0.0;
  for (var chunk = 0u; chunk < params.chunks; chunk++) { sum += partials[chunk * size + index]; }
  store_output(index, sum);
}
