// Workgroup counts for 1-D kernels: at most 65535 workgroups per dimension, the rest spills into y.
// Kernels rebuild the flat index as id.x + id.y * groups.x * WORKGROUP_SIZE.

export const MAX_WORKGROUPS_PER_DIMENSION = 65535;

export function grid1d(count: number, workgroupSize: number): [number, number] {
  const groups = Math.max(1, Math.ceil(count / workgroupSize));
  if (groups <= MAX_WORKGROUPS_PER_DIMENSION) return [groups, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIMENSION);
  return [Math.ceil(groups / y), y];
}
