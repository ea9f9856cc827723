// Entry of the web app. For now a status page: it acquires the GPU through the engine, runs one real
// matmul on it as a self-check, and says what it found (the full app is built in a later issue).

import { StrictMode, useEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { Engine } from '../engine/engine.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { acquireBrowserGpu } from '../gpu/browser.ts';
import { useGpuStatus } from '../store/gpuStatus.ts';

async function probeGpu(): Promise<void> {
  const { set } = useGpuStatus.getState();
  try {
    const gpu = await acquireBrowserGpu();
    const engine = new Engine(gpu);
    const product = await engine.scope(async () => {
      const a = engine.tensor([1, 2, 3, 4], [2, 2]);
      const b = engine.tensor([5, 6, 7, 8], [2, 2]);
      return Array.from(await matmul(a, b).read());
    });
    const { features, limits } = gpu.info;
    set({
      state: 'ready',
      description: [gpu.info.vendor, gpu.info.architecture, gpu.info.description].filter(Boolean).join(' · '),
      features: Object.entries(features).filter(([, has]) => has).map(([name]) => name),
      maxBindingBytes: limits.maxStorageBufferBindingSize,
      matmulCheck: product.join(', '),
    });
  } catch (error) {
    set({ state: 'unavailable', reason: error instanceof Error ? error.message : String(error) });
  }
}

function App() {
  const status = useGpuStatus((s) => s.status);
  useEffect(() => void probeGpu(), []);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', maxWidth: 720, margin: '3rem auto', lineHeight: 1.5 }}>
      <h1>tabtune</h1>
      <p>Fine-tune a language model in this tab, on your own GPU: LoRA, QLoRA and bottleneck adapters.</p>
      <section aria-live="polite" data-testid="gpu-status">
        {status.state === 'checking' && <p>Looking for a WebGPU device…</p>}
        {status.state === 'unavailable' && <p role="alert">WebGPU is not available: {status.reason}</p>}
        {status.state === 'ready' && (
          <dl>
            <dt>GPU</dt>
            <dd>{status.description || 'unnamed adapter'}</dd>
            <dt>Optional features</dt>
            <dd>{status.features.join(', ') || 'none'}</dd>
            <dt>Largest tensor</dt>
            <dd>{(status.maxBindingBytes / 2 ** 20).toFixed(0)} MiB</dd>
            <dt>Self-check [[1,2],[3,4]]·[[5,6],[7,8]]</dt>
            <dd data-testid="gpu-matmul-check">{status.matmulCheck}</dd>
          </dl>
        )}
      </section>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
