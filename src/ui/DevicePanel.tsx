// The GPU the engine found: name, features, limits, the memory budget models are checked against, and the
// result of the self-check matmul run on it at start.

import { useApp } from '../store/index.ts';
import { formatBytes } from './format.ts';

export function DevicePanel() {
  const gpu = useApp((s) => s.gpu);
  return (
    <section className="panel device" aria-labelledby="device-heading" aria-live="polite" data-testid="gpu-status">
      <h2 id="device-heading">Device</h2>
      {gpu.state === 'checking' && <p>Looking for a WebGPU device…</p>}
      {gpu.state === 'lost' && <p>The device was lost ({gpu.reason}).</p>}
      {gpu.state === 'unavailable' && <p>No WebGPU device: {gpu.reason}</p>}
      {gpu.state === 'elsewhere' && <p>The engine runs in another tab of tabtune; this tab has no GPU device until it gets the engine.</p>}
      {gpu.state === 'ready' && (
        <dl className="facts">
          <dt>GPU</dt>
          <dd>{[gpu.device.vendor, gpu.device.architecture, gpu.device.description].filter(Boolean).join(' · ') || 'unnamed adapter'}</dd>
          <dt>Features</dt>
          <dd>{gpu.device.features.join(', ') || 'none'}</dd>
          <dt>Largest tensor</dt>
          <dd>{formatBytes(gpu.device.maxBindingBytes)}</dd>
          <dt>Memory budget</dt>
          <dd>
            {gpu.device.memoryBudgetBytes === null
              ? 'not reported (WebGPU does not say how much memory a GPU has)'
              : `${formatBytes(gpu.device.memoryBudgetBytes)}, as reported by the browser (WebGPU does not say how much memory a GPU has)`}
          </dd>
          <dt>Self-check</dt>
          <dd>
            [[1,2],[3,4]]·[[5,6],[7,8]] = <span data-testid="gpu-matmul-check">{gpu.device.selfCheck.join(', ')}</span>
          </dd>
        </dl>
      )}
    </section>
  );
}
