// Entry of the web app: apply the saved theme, start the engine worker when this page has WebGPU (or record
// why not) and no other tab of the app runs one (store/tabLock.ts), and render the App. `?faults` in the URL
// exposes fault injection for the end-to-end tests.

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { loseDevice, reportNoWebGpu } from '../store/engineActions.ts';
import { openShareLink } from '../store/shareActions.ts';
import { runEngineInOneTab } from '../store/tabLock.ts';
import { EngineClient } from '../worker/client.ts';
import { App } from './App.tsx';
import { applyTheme, savedTheme } from './theme.ts';
import './styles.css';

applyTheme(savedTheme());

function missingWebGpuReason(): string | null {
  if (!window.isSecureContext) return 'this page is not a secure context (WebGPU needs https:// or localhost)';
  if (!('gpu' in navigator) || !navigator.gpu) return 'this browser does not expose WebGPU (navigator.gpu is missing)';
  return null;
}

const reason = missingWebGpuReason();
if (reason !== null) reportNoWebGpu(reason);
else runEngineInOneTab(() => EngineClient.start());

// A share link only becomes an offer: nothing is fetched or loaded until the user confirms it.
void openShareLink(location.hash);

if (new URLSearchParams(location.search).has('faults')) {
  (window as Window & { tabtuneFaults?: unknown }).tabtuneFaults = { loseDevice };
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
