// What the user sees when WebGPU is missing (a page in place of the panels) or when the device is lost after
// it worked (a banner that offers to restart the engine and reload the model).

import { restartEngine } from '../store/engineActions.ts';
import { useApp } from '../store/index.ts';

export function NoWebGpu() {
  const gpu = useApp((s) => s.gpu);
  const reason = gpu.state === 'unavailable' ? gpu.reason : '';
  return (
    <section className="panel notice" data-testid="webgpu-missing" aria-labelledby="no-webgpu-heading">
      <h2 id="no-webgpu-heading">WebGPU is not available here</h2>
      <p>
        tabtune runs the model and its training on your GPU through WebGPU, in this tab. This browser did not provide a WebGPU device:{' '}
        <strong>{reason}</strong>.
      </p>
      <h3>What to do</h3>
      <ul>
        <li>Use a recent desktop Chrome or Edge (version 113 or later). Safari 26 and Firefox 141 (Windows) also ship WebGPU.</li>
        <li>Open the app over https:// or from localhost: WebGPU needs a secure context.</li>
        <li>
          Open <code>chrome://gpu</code> and look for “WebGPU”. If it says disabled, update the graphics driver and turn on “Use graphics
          acceleration when available” in the browser’s system settings. On Linux, WebGPU may need <code>chrome://flags/#enable-unsafe-webgpu</code>{' '}
          and <code>chrome://flags/#enable-vulkan</code>.
        </li>
        <li>Then reload this page. Nothing is uploaded anywhere: models and data stay on this computer.</li>
      </ul>
    </section>
  );
}

export function DeviceLostBanner() {
  const gpu = useApp((s) => s.gpu);
  const reloadable = useApp((s) => s.model.reloadable);
  if (gpu.state !== 'lost') return null;
  const again = reloadable ? (reloadable.kind === 'demo' ? 'the demo model' : reloadable.spec) : null;
  return (
    <div className="banner" role="alert" data-testid="device-lost">
      <p>
        <strong>The GPU device was lost</strong> ({gpu.reason}
        {gpu.message ? `: ${gpu.message}` : ''}). This happens when the graphics driver resets, the GPU runs out of memory, or the
        browser reclaims it. The model was dropped from GPU memory; nothing on disk was touched.
      </p>
      <button type="button" onClick={() => void restartEngine()} disabled={gpu.restarting}>
        {gpu.restarting ? 'Restarting…' : again ? `Restart the engine and reload ${again}` : 'Restart the engine'}
      </button>
    </div>
  );
}
