// Size-bucketed pool of GPU buffers. Released buffers are kept and handed out again, so a
// steady-state training step allocates nothing new. Counters let tests and benchmarks prove it.
// Of the idle buffers in a bucket, the oldest is handed out first: which buffer a tensor gets then
// depends only on which buffers are idle, not on the order they were released in, so a repeated
// training step gets the same buffers and finds its bind groups in the cache.

/** Round a byte count up to its bucket: powers of two up to 64 KiB, then quarter steps between powers of two. */
export function bucketSize(bytes: number): number {
  const minimum = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (minimum <= 65536) return 2 ** Math.ceil(Math.log2(minimum));
  const power = 2 ** Math.floor(Math.log2(minimum));
  const step = power / 4;
  return Math.ceil(minimum / step) * step;
}

export interface PoolStats {
  /** Buffers ever created by the pool. */
  allocations: number;
  /** Bytes held by buffers currently handed out. */
  bytesInUse: number;
  /** Bytes held by idle buffers waiting for reuse. */
  bytesIdle: number;
}

export class BufferPool {
  /** Per bucket, idle buffers sorted newest first (the oldest is popped from the end). */
  private readonly idle = new Map<string, GPUBuffer[]>();
  private readonly age = new WeakMap<GPUBuffer, number>();
  private allocations = 0;
  private bytesInUse = 0;
  private bytesIdle = 0;

  constructor(private readonly device: GPUDevice) {}

  acquire(bytes: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const size = bucketSize(bytes);
    const free = this.idle.get(key(size, usage));
    const reused = free?.pop();
    if (reused) {
      this.bytesIdle -= size;
      this.bytesInUse += size;
      return reused;
    }
    const buffer = this.device.createBuffer({ size, usage });
    this.allocations++;
    this.age.set(buffer, this.allocations);
    this.bytesInUse += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const k = key(buffer.size, buffer.usage);
    let free = this.idle.get(k);
    if (!free) this.idle.set(k, (free = []));
    // Insert keeping newest-first order; buckets hold few buffers, so a linear scan is enough.
    const age = this.age.get(buffer) ?? 0;
    let at = free.length;
    while (at > 0 && (this.age.get(free[at - 1]) ?? 0) < age) at--;
    free.splice(at, 0, buffer);
    this.bytesInUse -= buffer.size;
    this.bytesIdle += buffer.size;
  }

  /** Destroy idle buffers (after a model is unloaded, or when an allocation failed for lack of memory). */
  trim(): void {
    for (const list of this.idle.values()) for (const buffer of list) buffer.destroy();
    this.idle.clear();
    this.bytesIdle = 0;
  }

  stats(): PoolStats {
    return { allocations: this.allocations, bytesInUse: this.bytesInUse, bytesIdle: this.bytesIdle };
  }
}

function key(size: number, usage: number): string {
  return `${usage}:${size}`;
}
