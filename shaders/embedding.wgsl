// Embedding lookup: out[n, :] = table[ids[n], :], and its table gradient (a deterministic scatter-add).
// N tokens (ids flattened), V vocabulary rows, C columns. An id outside [0, V) reads nothing: its
// output row is zero and it adds nothing to the gradient.

override WORKGROUP_SIZE: u32 = 256;
// Scatter-add workgroups cover this many columns; const because it also sizes the x dimension.
const SCATTER_COLUMNS: u32 = 64u;

struct Params {
  tokens: u32,          // N
  vocab: u32,           // V
  width: u32,           // C
  rows_per_chunk: u32,  // scatter-add: vocabulary rows owned by one thread (per column)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;            // [N]
@group(0) @binding(2) var<storage, read> table: array<f32>;          // [V, C]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // [N, C]
@group(0) @binding(4) var<storage, read> d_out: array<f32>;          // [N, C]
@group(0) @binding(5) var<storage, read_write> d_table: array<f32>;  // [V, C], zeroed beforehand

// One thread per output element; a 1-D grid that spills into y past 65535 workgroups.
@compute @workgroup_size(WORKGROUP_SIZE)
fn embeddingForward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.tokens * params.width) { return; }
  let token = i / params.width;
  let column = i % params.width;
  let row = ids[token];
  var value = 0.0;
  if (row >= 0 && u32(row) < params.vocab) { value = table[u32(row) * params.width + column]; }
  out[i] = value;
}

// d_table[v, c] += Σ_{n : ids[n] = v} d_out[n, c]. Race-free without atomics: thread (c, chunk) owns
// column c of the vocabulary rows [chunk · rows_per_chunk, (chunk + 1) · rows_per_chunk) and walks
// every token in order, so each sum has one writer and a fixed order (bit-identical between runs).
// Grid: (ceil(C / SCATTER_COLUMNS), number of chunks).
@compute @workgroup_size(SCATTER_COLUMNS)
fn embeddingBackward(@builtin(global_invocation_id) id: vec3<u32>) {
  let column = id.x;
  if (column >= params.width) { return; }
  let first = id.y * params.rows_per_chunk;
  let end = min(first + params.rows_per_chunk, params.vocab);
  for (var token = 0u; token < params.tokens; token++) {
    let row = ids[token];
    if (row < 0 || u32(row) < first || u32(row) >= end) { continue; }
    let slot = u32(row) * params.width + column;
    d_table[slot] = d_table[slot] + d_out[token * params.width + column];
  }
}
