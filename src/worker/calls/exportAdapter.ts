// The attached adapter as a download, in one of two formats:
//   'safetensors' (the default): one safetensors file whose header metadata carries the config (adapterBundle.ts);
//   'zip': the library's own files, ready to unpack into a folder: PEFT's adapter_config.json +
//          adapter_model.safetensors for LoRA/QLoRA (PeftModel.from_pretrained), AdapterHub's adapter_config.json +
//          adapter.safetensors for bottleneck adapters (model.load_adapter(folder, use_safetensors=True)).
// Both hold the same bytes for the config and the tensors; the import (importAdapter.ts) reads either.

import { writeZip } from '../../io/zipFiles.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../../peft/adapterErrors.ts';
import { BOTTLENECK_CONFIG_FILE, BOTTLENECK_WEIGHTS_FILE, exportBottleneckAdapter } from '../../peft/bottleneckFiles.ts';
import { exportLoraAdapter } from '../../peft/peftFiles.ts';
import { bundleAdapter, type AdapterFiles } from '../adapterBundle.ts';
import { engineState, requireLoaded } from '../engineState.ts';
import { BadRequestError, NoModelError } from '../failures.ts';
import type { AdapterDownloadFormat, Payload, Result } from '../protocol.ts';

/** The attached adapter's two files, read back from the GPU. */
export async function attachedAdapterFiles(): Promise<AdapterFiles> {
  const current = requireLoaded();
  const { adapted } = engineState;
  if (!adapted) throw new NoModelError('no adapter is attached: choose a method and train first');
  if (adapted.peft) {
    const files = await exportLoraAdapter(adapted.peft, { baseModelNameOrPath: current.summary.name });
    return {
      layout: 'peft',
      configFile: ADAPTER_CONFIG_FILE,
      config: new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)!),
      weightsFile: ADAPTER_WEIGHTS_FILE,
      weights: files.get(ADAPTER_WEIGHTS_FILE)!,
    };
  }
  const files = await exportBottleneckAdapter(adapted.bottleneck!, { modelName: current.summary.name });
  return {
    layout: 'adapterhub',
    configFile: BOTTLENECK_CONFIG_FILE,
    config: new TextDecoder().decode(files.get(BOTTLENECK_CONFIG_FILE)!),
    weightsFile: BOTTLENECK_WEIGHTS_FILE,
    weights: files.get(BOTTLENECK_WEIGHTS_FILE)!,
  };
}

const FORMATS: readonly AdapterDownloadFormat[] = ['safetensors', 'zip'];

export async function exportAdapterCall(payload: Payload<'exportAdapter'>): Promise<Result<'exportAdapter'>> {
  const format = payload.format ?? 'safetensors';
  if (!FORMATS.includes(format)) throw new BadRequestError(`the adapter download format must be ${FORMATS.join(' or ')}, got ${JSON.stringify(format)}`);
  const files = await attachedAdapterFiles();
  const method = engineState.adapted!.summary.settings.method;
  const stem = `tabtune-${method}-adapter`;
  if (format === 'safetensors') return { fileName: `${stem}.safetensors`, bytes: bundleAdapter(files) };
  const fileName = `${stem}.zip`;
  const bytes = writeZip(
    [
      [files.configFile, new TextEncoder().encode(files.config)],
      [files.weightsFile, files.weights],
    ],
    fileName,
  );
  return { fileName, bytes };
}
