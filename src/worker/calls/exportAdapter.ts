// The attached adapter as one downloadable file: PEFT files for LoRA/QLoRA, AdapterHub files for bottleneck
// adapters, bundled into a single safetensors file whose header metadata carries the config (adapterBundle.ts).

import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../../peft/adapterErrors.ts';
import { BOTTLENECK_CONFIG_FILE, BOTTLENECK_WEIGHTS_FILE, exportBottleneckAdapter } from '../../peft/bottleneckFiles.ts';
import { exportLoraAdapter } from '../../peft/peftFiles.ts';
import { bundleAdapter } from '../adapterBundle.ts';
import { engineState, requireLoaded } from '../engineState.ts';
import { NoModelError } from '../failures.ts';
import type { Result } from '../protocol.ts';

export async function exportAdapterCall(): Promise<Result<'exportAdapter'>> {
  const current = requireLoaded();
  const { adapted } = engineState;
  if (!adapted) throw new NoModelError('no adapter is attached: choose a method and train first');
  const method = adapted.summary.settings.method;
  if (adapted.peft) {
    const files = await exportLoraAdapter(adapted.peft, { baseModelNameOrPath: current.summary.name });
    const bytes = bundleAdapter({
      layout: 'peft',
      configFile: ADAPTER_CONFIG_FILE,
      config: new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)!),
      weightsFile: ADAPTER_WEIGHTS_FILE,
      weights: files.get(ADAPTER_WEIGHTS_FILE)!,
    });
    return { fileName: `tabtune-${method}-adapter.safetensors`, bytes };
  }
  const files = await exportBottleneckAdapter(adapted.bottleneck!, { modelName: current.summary.name });
  const bytes = bundleAdapter({
    layout: 'adapterhub',
    configFile: BOTTLENECK_CONFIG_FILE,
    config: new TextDecoder().decode(files.get(BOTTLENECK_CONFIG_FILE)!),
    weightsFile: BOTTLENECK_WEIGHTS_FILE,
    weights: files.get(BOTTLENECK_WEIGHTS_FILE)!,
  });
  return { fileName: `tabtune-${method}-adapter.safetensors`, bytes };
}
