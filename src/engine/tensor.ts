// Tensor: a GPU buffer with a shape and dtype, reference counted because JavaScript has no
// destructors. The buffer returns to the pool when the last reference is released.

import type { Engine } from './engine.ts';
import type { MemoryCategory } from './memory.ts';
import { DestroyedTensorError, shapeText } from './errors.ts';

export type DType = 'f32' | 'i32' | 'u32';
export type HostArray = Float32Array | Int32Array | Uint32Array;

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  /** A gradient is wanted for this tensor: a trainable parameter, or computed from one. */
  requiresGrad: boolean;
  /** Accumulated gradient of a leaf tensor after backward(). */
  grad: Tensor | null = null;
  /** Produced by a recorded op (not a leaf). */
  hasProducer = false;
  /** What this tensor's bytes count as in Engine.memory(). */
  category: MemoryCategory = 'activations';
  /** The innermost scope still holds a reference to this tensor. */
  scopeOwned = false;
  private refs = 1;
  private storage: GPUBuffer | null;
  /** For a view (reshape): the tensor whose buffer this one shares, kept alive while the view lives. */
  private base: Tensor | null = null;

  constructor(
    readonly engine: Engine,
    buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    requiresGrad = false,
    readonly name = '',
  ) {
    this.storage = buffer;
    this.size = shape.reduce((product, dim) => product * dim, 1);
    this.requiresGrad = requiresGrad;
  }

  get byteLength(): number {
    return this.size * 4;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Live references: owner or scope, tape nodes that saved it, gradient tables. */
  get references(): number {
    return this.storage ? this.refs : 0;
  }

  get isDestroyed(): boolean {
    return this.storage === null;
  }

  get buffer(): GPUBuffer {
    if (!this.storage) throw new DestroyedTensorError(`${this.describe()} was used after it was released`);
    return this.storage;
  }

  /** The buffer bound with exactly this tensor's bytes (pool buffers can be larger). */
  get binding(): { buffer: GPUBuffer; size: number } {
    return { buffer: this.buffer, size: Math.max(4, this.byteLength) };
  }

  retain(): this {
    this.buffer; // throws if destroyed
    this.refs++;
    return this;
  }

  release(): void {
    if (!this.storage) return;
    if (--this.refs > 0) return;
    if (this.base) this.base.release();
    else {
      this.engine.gpu.release(this.storage);
      this.engine.forget(this);
    }
    this.storage = null;
    this.base = null;
    if (this.grad && !this.grad.isDestroyed) this.grad.release();
    this.grad = null;
  }

  /** Drop the caller's reference: the owner's, or the enclosing scope's. */
  dispose(): void {
    this.scopeOwned = false;
    this.release();
  }

  /** A tensor of another shape sharing this one's buffer (same element count; caller checks). */
  view(shape: readonly number[]): Tensor {
    const view = new Tensor(this.engine, this.buffer, shape, this.dtype); // not registered: the base counts the bytes
    view.base = this.retain();
    return view;
  }

  async read(): Promise<HostArray> {
    const bytes = await this.engine.gpu.read(this.buffer, this.byteLength);
    if (this.dtype === 'i32') return new Int32Array(bytes);
    if (this.dtype === 'u32') return new Uint32Array(bytes);
    return new Float32Array(bytes);
  }

  /** Read an f32 tensor as numbers (for small tensors: losses, test values). */
  async toArray(): Promise<number[]> {
    return Array.from(await this.read());
  }

  describe(): string {
    return `tensor${this.name ? ` '${this.name}'` : ` #${this.id}`} ${shapeText(this.shape)} ${this.dtype}`;
  }
}
