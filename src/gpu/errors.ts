// Typed errors raised by the GPU layer. Callers catch these by class; messages say what was asked and what the device has.

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No WebGPU adapter could be obtained (no browser support, no driver). */
export class GpuUnavailableError extends GpuError {}

/** The device was lost (driver reset, `device.destroy()`, tab in background too long). All GPU objects are invalid. */
export class DeviceLostError extends GpuError {
  constructor(readonly reason: string, detail: string) {
    super(`GPU device lost (${reason})${detail ? `: ${detail}` : ''}`);
  }
}

/** WebGPU validation error: a bug in how a kernel was dispatched, never the user's data. */
export class GpuValidationError extends GpuError {}

/** The device could not allocate memory. */
export class GpuOutOfMemoryError extends GpuError {}

/** An internal driver or implementation error. */
export class GpuInternalError extends GpuError {}

/** A buffer or binding larger than a device limit allows. */
export class GpuLimitError extends GpuError {
  constructor(readonly limit: string, readonly requested: number, readonly allowed: number, what: string) {
    super(`${what} needs ${requested} bytes but the device's ${limit} is ${allowed} bytes`);
  }
}
