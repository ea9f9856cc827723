// Per-kernel GPU time for benchmarks: while a profile records, every dispatch runs in a compute pass of its own whose
// beginning and end write GPU timestamps, and the times are summed by kernel (shader file and entry point). The
// extra passes add a little time of their own, so a profile gives each kernel's share of a step, while the step's
// own time comes from an ordinary run.

/** One kernel's dispatches in the profiled work and their summed GPU time. */
export interface KernelTime {
  /** "shader:entryPoint". */
  kernel: string;
  dispatches: number;
  ms: number;
}

export interface KernelProfile {
  /** Largest total first. */
  kernels: KernelTime[];
  /** Dispatches recorded after the profile was full: they ran, untimed. */
  untimed: number;
}

/** Dispatches one profile can time: two timestamps each, and a query set holds at most 4096. */
export const PROFILE_CAPACITY = 2048;

export class KernelProfiler {
  /** The kernel of each timed dispatch, in recording order (dispatch i wrote timestamps 2i and 2i + 1). */
  readonly kernels: string[] = [];
  private untimed = 0;

  constructor(
    readonly querySet: GPUQuerySet,
    readonly capacity: number,
  ) {}

  /** The timestamp writes for the next dispatch, of `kernel`; null once the profile is full. */
  next(kernel: string): GPUComputePassTimestampWrites | null {
    if (this.kernels.length >= this.capacity) {
      this.untimed++;
      return null;
    }
    const index = this.kernels.length;
    this.kernels.push(kernel);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * index, endOfPassWriteIndex: 2 * index + 1 };
  }

  /** Sum the resolved timestamps (nanoseconds, a begin/end pair per timed dispatch) by kernel. */
  summarize(timestamps: BigUint64Array): KernelProfile {
    const byKernel = new Map<string, KernelTime>();
    this.kernels.forEach((kernel, i) => {
      const entry = byKernel.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
      // A pass's end never reads earlier than its beginning on a sane clock; clamp what a reset might give.
      const ns = timestamps[2 * i + 1] > timestamps[2 * i] ? Number(timestamps[2 * i + 1] - timestamps[2 * i]) : 0;
      entry.dispatches++;
      entry.ms += ns / 1e6;
      byKernel.set(kernel, entry);
    });
    return { kernels: [...byKernel.values()].sort((a, b) => b.ms - a.ms), untimed: this.untimed };
  }
}
