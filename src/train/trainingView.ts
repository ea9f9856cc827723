// A model with adapters attached, as the Trainer sees it: the model's forward passes, the adapter tensors
// as the only trainable parameters, and the dropout state handed to the adapters. It also records the
// peak of live GPU memory by category, sampled after each forward (when the activations are alive). The view does
// not own the model: dispose() leaves it to its owner.

import type { Engine } from '../engine/engine.ts';
import { emptyMemoryReport, type MemoryReport } from '../engine/memory.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ModelConfig } from '../models/config.ts';
import type { CausalLM, ForwardOptions } from '../models/model.ts';
import type { TrainableModel, TrainingState } from './trainer.ts';

export class AdapterTrainingView implements TrainableModel {
  /** engine.memory() at the largest total seen after a forward or a sample() call. */
  peakMemory: MemoryReport = emptyMemoryReport();

  constructor(
    private readonly model: CausalLM,
    private readonly params: Tensor[],
    private readonly onState: (state: TrainingState) => void,
  ) {}

  get config(): ModelConfig {
    return this.model.config;
  }

  get engine(): Engine {
    return this.model.engine;
  }

  get peakBytes(): number {
    return this.peakMemory.total;
  }

  sample(): void {
    const now = this.model.engine.memory();
    if (now.total > this.peakMemory.total) this.peakMemory = now;
  }

  trainableParameters(): Tensor[] {
    return this.params;
  }

  setTrainingState(state: TrainingState): void {
    this.onState(state);
  }

  forward(ids: Tensor, options?: ForwardOptions): Tensor {
    const out = this.model.forward(ids, options);
    this.sample();
    return out;
  }

  hidden(ids: Tensor, options?: ForwardOptions): Tensor {
    const out = this.model.hidden(ids, options);
    this.sample();
    return out;
  }

  head(hidden: Tensor): Tensor {
    return this.model.head(hidden);
  }

  parameters(): Map<string, Tensor> {
    return this.model.parameters();
  }

  linears() {
    return this.model.linears();
  }

  createKVCache(batch: number, maxLength: number) {
    return this.model.createKVCache(batch, maxLength);
  }

  dispose(): void {}
}
