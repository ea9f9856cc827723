// Attaching a method's adapter to the loaded model: LoRA wrappers on the target linears (after converting them
// to NF4 in place for QLoRA), or bottleneck adapters on residual hooks; the summary counts what will train.

import type { CausalLM } from '../../models/model.ts';
import { BottleneckModel, bottleneckConfig } from '../../peft/bottleneckModel.ts';
import { attachLora, type PeftModel } from '../../peft/peftModel.ts';
import { quantizeLinears } from '../../peft/qlora.ts';
import { defaultTargetModules } from '../../peft/targets.ts';
import { engineState, quantizedBase, requireLoaded } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { AttachedMethod, MethodSettings } from '../protocol.ts';

const ADAPTER_NAME = 'default';

/** QLoRA's base: NF4 with double-quantized absmax (the QLoRA paper's and bitsandbytes' choice). */
export const QLORA_QUANTIZATION = { quantType: 'nf4', doubleQuant: true } as const;

export function checkSettings(s: MethodSettings): void {
  if (typeof s !== 'object' || s === null || !['lora', 'qlora', 'adapter'].includes(s.method)) throw new BadRequestError('the method must be lora, qlora or adapter');
  if (s.method === 'adapter') {
    if (!Number.isSafeInteger(s.reductionFactor) || s.reductionFactor < 1) throw new BadRequestError(`the reduction factor must be an integer ≥ 1, got ${s.reductionFactor}`);
    if (s.placement !== 'pfeiffer' && s.placement !== 'houlsby') throw new BadRequestError('the placement must be pfeiffer or houlsby');
  } else {
    if (!Number.isSafeInteger(s.r) || s.r < 1) throw new BadRequestError(`the rank must be an integer ≥ 1, got ${s.r}`);
    if (!Number.isFinite(s.alpha) || s.alpha === 0) throw new BadRequestError(`alpha must be a number other than 0, got ${s.alpha}`);
    if (s.targetModules !== null && (!Array.isArray(s.targetModules) || s.targetModules.length === 0 || s.targetModules.some((t) => typeof t !== 'string' || t === ''))) {
      throw new BadRequestError('the target modules must be a non-empty list of module names');
    }
  }
  if (!(s.dropout >= 0 && s.dropout < 1)) throw new BadRequestError(`the dropout must be in [0, 1), got ${s.dropout}`);
}

export function detachAdapter(): void {
  const { adapted } = engineState;
  if (!adapted) return;
  if (adapted.peft) adapted.peft.unload();
  adapted.bottleneck?.detach();
  engineState.adapted = null;
}

/** Make `peft` (attached to the loaded model) the adapter of record, with `settings` as its key; its summary. */
export function adoptLora(model: CausalLM, peft: PeftModel, settings: MethodSettings): AttachedMethod {
  const counts = peft.parameterCounts();
  const summary: AttachedMethod = {
    settings,
    trainableParameters: counts.trainable,
    totalParameters: counts.total,
    targets: [...peft.adapterConfig().paths],
    defaultTargets: defaultTargetModules(model.config.modelType),
  };
  engineState.adapted = { key: JSON.stringify(settings), peft, bottleneck: null, params: [...peft.trainableParameters().values()], summary };
  return summary;
}

/** Make `bottleneck` (attached to the loaded model) the adapter of record, with `settings` as its key; its summary. */
export function adoptBottleneck(model: CausalLM, bottleneck: BottleneckModel, settings: MethodSettings): AttachedMethod {
  let totalBase = 0;
  for (const tensor of model.parameters().values()) totalBase += tensor.size;
  const trainable = bottleneck.trainableParameterCount();
  const summary: AttachedMethod = {
    settings,
    trainableParameters: trainable,
    totalParameters: totalBase + trainable,
    targets: bottleneck.placements().map((p) => `layer ${p.layer} ${p.slot} (${p.downSize})`),
    defaultTargets: defaultTargetModules(model.config.modelType),
  };
  engineState.adapted = { key: JSON.stringify(settings), peft: null, bottleneck, params: [...bottleneck.trainableParameters().values()], summary };
  return summary;
}

export async function attachMethod(settings: MethodSettings): Promise<AttachedMethod> {
  const current = requireLoaded();
  checkSettings(settings);
  if (current.quantized && settings.method !== 'qlora') {
    const { why, remedy } = quantizedBase(current);
    throw new BadRequestError(`${why}: ${remedy} to use LoRA or adapters`);
  }
  detachAdapter();
  const model = current.model;
  const seed = 0;
  if (settings.method === 'adapter') {
    const bottleneck = BottleneckModel.attach(model);
    try {
      bottleneck.addAdapter(ADAPTER_NAME, bottleneckConfig(settings.placement, { reductionFactor: settings.reductionFactor, dropout: settings.dropout }), { seed });
    } catch (error) {
      bottleneck.detach();
      throw new BadRequestError((error as Error).message);
    }
    return adoptBottleneck(model, bottleneck, settings);
  }
  if (settings.method === 'qlora' && !current.quantized) {
    await quantizeLinears(model, QLORA_QUANTIZATION);
    current.quantized = true;
  }
  let peft: PeftModel;
  try {
    peft = attachLora(model, { r: settings.r, alpha: settings.alpha, dropout: settings.dropout, useRslora: settings.useRslora, targetModules: settings.targetModules ?? undefined }, { seed });
  } catch (error) {
    if (error instanceof Error && !(error instanceof RangeError)) throw new BadRequestError(error.message);
    throw error;
  }
  return adoptLora(model, peft, settings);
}
