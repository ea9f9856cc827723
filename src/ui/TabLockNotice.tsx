// The notice shown while another tab of the app runs the engine (store/tabLock.ts): this tab waits and starts by
// itself when that tab closes, or takes the engine over with one button.

import { useApp } from '../store/index.ts';
import { takeOverEngine } from '../store/tabLock.ts';
import './TabLockNotice.css';

export function TabLockNotice() {
  const gpu = useApp((s) => s.gpu);
  if (gpu.state !== 'elsewhere') return null;
  const moved = gpu.reason === 'moved';
  return (
    <div className="tab-lock" role="status" data-testid="tab-lock-notice">
      <p>
        <strong>{moved ? 'tabtune moved to another tab.' : 'tabtune is running in another tab.'}</strong>{' '}
        {moved
          ? 'The engine now runs there; this tab stopped its own and unloaded its model. '
          : 'Only one tab at a time runs the engine: two would compete for GPU memory and for the saved checkpoints. '}
        This tab starts by itself when the other one closes.
      </p>
      <button type="button" data-testid="tab-lock-takeover" disabled={gpu.asking} onClick={() => void takeOverEngine()}>
        {gpu.asking ? 'Asking the other tab…' : moved ? 'Take it back' : 'Use it here'}
      </button>
    </div>
  );
}
