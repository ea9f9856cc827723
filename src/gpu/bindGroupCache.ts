// Bind groups reused across training steps. A steady-state step records the same dispatches on the
// same pooled buffers at the same parameter-ring offsets every time, so after the first step every
// bind group is found here instead of being created again (creating one is the largest CPU cost of a
// dispatch). Entries refer to buffers only by identity; clear() must run when buffers are destroyed.

export interface BindingEntry {
  binding: number;
  buffer: GPUBuffer;
  offset: number;
  size: number | undefined;
}

const MAX_ENTRIES = 16384;

export class BindGroupCache {
  private readonly groups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  hits = 0;
  misses = 0;

  constructor(private readonly device: GPUDevice) {}

  get(pipeline: GPUComputePipeline, entries: readonly BindingEntry[]): GPUBindGroup {
    let key = `${this.id(pipeline)}`;
    for (const entry of entries) key += `|${entry.binding}:${this.id(entry.buffer)}:${entry.offset}:${entry.size ?? ''}`;
    let group = this.groups.get(key);
    if (group) {
      this.hits++;
      return group;
    }
    this.misses++;
    if (this.groups.size >= MAX_ENTRIES) this.groups.clear();
    group = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: entries.map(({ binding, buffer, offset, size }) => ({ binding, resource: { buffer, offset, size } })),
    });
    this.groups.set(key, group);
    return group;
  }

  clear(): void {
    this.groups.clear();
  }

  private id(object: object): number {
    let id = this.ids.get(object);
    if (id === undefined) this.ids.set(object, (id = this.nextId++));
    return id;
  }
}
