// The engine: creates tensors, records a tape of backward closures, runs backward() in reverse,
// and scopes temporaries so that everything a step creates goes back to the buffer pool.

import type { Gpu } from '../gpu/runtime.ts';
import { EngineError, ShapeError, shapeText } from './errors.ts';
import { accumulateInto, clone, fill } from './kernels/elementwiseCore.ts';
import { emptyMemoryReport, type MemoryCategory, type MemoryReport } from './memory.ts';
import { Tensor, type DType, type HostArray } from './tensor.ts';

/** Gradients for each input of a node, in order; `null` where no gradient is needed. */
export type BackwardFn = (gradOutput: Tensor, needsGrad: readonly boolean[]) => (Tensor | null)[];

interface TapeNode {
  output: Tensor;
  inputs: readonly Tensor[];
  /** Tensors the backward closure reads; released as soon as it has run. */
  saved: readonly Tensor[];
  backward: BackwardFn;
}

export interface TensorOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  name?: string;
  /** Memory accounting category; 'activations' unless said otherwise. */
  category?: MemoryCategory;
}

export class Engine {
  private tape: TapeNode[] = [];
  private readonly scopes: Tensor[][] = [];
  private gradEnabled = true;
  /** Every live tensor that owns a buffer, for memory accounting. */
  private readonly live = new Set<Tensor>();

  constructor(readonly gpu: Gpu) {}

  /** An uninitialised tensor (op outputs). */
  empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
    checkShape(shape);
    const size = shape.reduce((product, dim) => product * dim, 1);
    const name = options.name ?? '';
    const buffer = this.gpu.allocate(size * 4, name ? `tensor '${name}' ${shapeText(shape)}` : `a tensor ${shapeText(shape)}`);
    const tensor = new Tensor(this, buffer, shape, options.dtype ?? 'f32', options.requiresGrad ?? false, name);
    if (options.category) tensor.category = options.category;
    this.live.add(tensor);
    this.adopt(tensor);
    return tensor;
  }

  /** Bytes held by live tensors, per category (logical sizes; the pool may round buffers up). */
  memory(): MemoryReport {
    const report = emptyMemoryReport();
    for (const tensor of this.live) {
      report[tensor.category] += tensor.byteLength;
      report.total += tensor.byteLength;
    }
    return report;
  }

  /** Called by Tensor when its buffer goes back to the pool. */
  forget(tensor: Tensor): void {
    this.live.delete(tensor);
  }

  /** Register a tensor made outside empty() (a view) with the current scope. */
  adoptView(tensor: Tensor): Tensor {
    this.adopt(tensor);
    return tensor;
  }

  /** A tensor holding host data. */
  tensor(data: HostArray | readonly number[], shape: readonly number[], options: TensorOptions = {}): Tensor {
    const dtype = options.dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
    const size = shape.reduce((product, dim) => product * dim, 1);
    if (data.length !== size) {
      throw new ShapeError(`tensor data has ${data.length} elements but shape ${shapeText(shape)} needs ${size}`);
    }
    const tensor = this.empty(shape, { ...options, dtype });
    const host = ArrayBuffer.isView(data)
      ? data
      : dtype === 'f32'
        ? Float32Array.from(data)
        : dtype === 'i32'
          ? Int32Array.from(data)
          : Uint32Array.from(data);
    if (size > 0) this.gpu.upload(tensor.buffer, host);
    return tensor;
  }

  full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
    const tensor = this.empty(shape, options);
    fill(tensor, value);
    return tensor;
  }

  zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return this.full(shape, 0, options);
  }

  /**
   * Run `fn` and release every tensor it created, except those it returns (which move to the
   * enclosing scope) and those marked with keep(). A training step runs in one scope, so its
   * temporaries go back to the pool and the next step reuses them.
   */
  scope<T>(fn: () => T): T {
    const created: Tensor[] = [];
    this.scopes.push(created);
    let result: T;
    try {
      result = fn();
    } catch (error) {
      this.endScope(created, undefined);
      throw error;
    }
    if (result instanceof Promise) {
      // An async scope stays open until its promise settles; scopes must not interleave.
      return result.then(
        (value) => (this.endScope(created, value), value),
        (error) => {
          this.endScope(created, undefined);
          throw error;
        },
      ) as T;
    }
    this.endScope(created, result);
    return result;
  }

  private endScope(created: Tensor[], result: unknown): void {
    if (this.scopes[this.scopes.length - 1] !== created) throw new EngineError('engine scopes ended out of order');
    this.scopes.pop();
    const escaping = new Set(collectTensors(result));
    for (const tensor of created) {
      if (!tensor.scopeOwned) continue;
      if (escaping.has(tensor)) this.adopt(tensor);
      else tensor.dispose();
    }
  }

  /** Take a tensor out of scope management: the caller now owns it and must dispose() it. */
  keep<T extends Tensor>(tensor: T): T {
    tensor.scopeOwned = false;
    return tensor;
  }

  /** Run `fn` without recording anything on the tape (evaluation, optimizer updates). */
  noGrad<T>(fn: () => T): T {
    const previous = this.gradEnabled;
    this.gradEnabled = false;
    try {
      return fn();
    } finally {
      this.gradEnabled = previous;
    }
  }

  /** Whether an op with these inputs must record a backward closure. */
  needsGrad(inputs: readonly Tensor[]): boolean {
    return this.gradEnabled && inputs.some((input) => input.requiresGrad);
  }

  /** Record a node: called by ops after computing `output`, only when needsGrad(inputs). */
  record(output: Tensor, inputs: readonly Tensor[], saved: readonly Tensor[], backward: BackwardFn): void {
    for (const tensor of saved) tensor.retain();
    output.requiresGrad = true;
    output.hasProducer = true;
    this.tape.push({ output, inputs, saved, backward });
  }

  /**
   * Backpropagate from `root` (a scalar unless `gradient` is given). Leaf tensors that require a
   * gradient receive it in `.grad`, added to what is there. Each node's saved activations are
   * released as soon as its backward closure has run; the tape is empty afterwards.
   */
  backward(root: Tensor, gradient?: Tensor): void {
    if (!root.requiresGrad) throw new EngineError(`backward() from ${root.describe()}, which does not depend on anything that requires a gradient`);
    if (!gradient && root.size !== 1) throw new ShapeError(`backward() needs a scalar or an explicit gradient; got ${shapeText(root.shape)}`);
    if (gradient && gradient.size !== root.size) throw new ShapeError(`gradient ${shapeText(gradient.shape)} does not match ${shapeText(root.shape)}`);
    const tape = this.tape;
    this.tape = [];
    this.handSavedTensorsToTape(tape, root);

    const grads = new Map<Tensor, Tensor>();
    grads.set(root, gradient ? gradient.retain() : this.noGrad(() => this.full(root.shape, 1)));
    this.noGrad(() => {
      for (let index = tape.length - 1; index >= 0; index--) {
        const node = tape[index];
        const gradOutput = grads.get(node.output);
        grads.delete(node.output);
        if (gradOutput) {
          const needs = node.inputs.map((input) => input.requiresGrad);
          const inputGrads = node.backward(gradOutput, needs);
          const handedOut = new Set<Tensor>();
          inputGrads.forEach((grad, i) => {
            if (!grad || !needs[i]) return;
            // A closure may pass gradOutput (or one tensor twice) straight through: each use needs its own reference.
            if (grad === gradOutput || handedOut.has(grad)) grad.retain();
            handedOut.add(grad);
            this.accumulate(node.inputs[i], grad, grads);
          });
          gradOutput.release();
        }
        for (const tensor of node.saved) tensor.release();
      }
    });
    for (const leftover of grads.values()) leftover.release();
  }

  /** Drop the tape without running it (evaluation under grad mode, an aborted step). */
  clearTape(): void {
    for (const node of this.tape) for (const tensor of node.saved) tensor.release();
    this.tape = [];
  }

  private accumulate(input: Tensor, grad: Tensor, grads: Map<Tensor, Tensor>): void {
    if (grad.shape.length !== input.shape.length || grad.size !== input.size) {
      throw new ShapeError(`gradient ${shapeText(grad.shape)} does not match its input ${input.describe()}`);
    }
    grad.scopeOwned = false; // owned by the gradient table or by the leaf from here on
    if (!input.hasProducer) grad.category = 'gradients';
    const existing = input.hasProducer ? grads.get(input) : input.grad;
    if (!existing) {
      if (input.hasProducer) grads.set(input, grad);
      else input.grad = grad;
      return;
    }
    if (existing.references > 1) {
      // Shared with another entry of the table (one gradient passed to two inputs): add out of place.
      const sum = clone(existing);
      sum.category = existing.category;
      existing.release();
      accumulateInto(sum, grad);
      grad.release();
      if (input.hasProducer) grads.set(input, sum);
      else input.grad = sum;
      return;
    }
    accumulateInto(existing, grad);
    grad.release();
  }

  /**
   * The enclosing scope gives up its reference to activations saved on the tape, so that
   * backward() frees each one right after the last closure that reads it.
   */
  private handSavedTensorsToTape(tape: TapeNode[], root: Tensor): void {
    for (const node of tape) {
      for (const tensor of node.saved) {
        if (tensor.scopeOwned && tensor.hasProducer && tensor !== root) {
          tensor.scopeOwned = false;
          tensor.release();
        }
      }
    }
  }

  private adopt(tensor: Tensor): void {
    const scope = this.scopes[this.scopes.length - 1];
    if (scope) {
      tensor.scopeOwned = true;
      scope.push(tensor);
    }
  }
}

function checkShape(shape: readonly number[]): void {
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new ShapeError(`invalid tensor shape ${shapeText(shape)}`);
  }
}

function collectTensors(value: unknown, out: Tensor[] = []): Tensor[] {
  if (value instanceof Tensor) out.push(value);
  else if (Array.isArray(value)) for (const item of value) collectTensors(item, out);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) collectTensors(item, out);
  }
  return out;
}
