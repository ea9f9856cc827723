// The page: a header with the theme choice, a banner when the GPU device is lost, and the panels. Without
// WebGPU the panels give way to a page that explains why and what to do.

import { useApp } from '../store/index.ts';
import { DataPanel } from './DataPanel.tsx';
import { DevicePanel } from './DevicePanel.tsx';
import { ExportPanel } from './ExportPanel.tsx';
import { DeviceLostBanner, NoWebGpu } from './GpuNotices.tsx';
import { MethodPanel } from './MethodPanel.tsx';
import { ModelPanel } from './ModelPanel.tsx';
import { Playground } from './Playground.tsx';
import { ResumeOffer } from './ResumeOffer.tsx';
import { ShareOffer, SharePanel } from './Share.tsx';
import { TabLockNotice } from './TabLockNotice.tsx';
import { ThemeSwitch } from './ThemeSwitch.tsx';
import { TrainPanel } from './TrainPanel.tsx';

export function App() {
  const gpuState = useApp((s) => s.gpu.state);
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to the panels
      </a>
      <header className="app-header">
        <div>
          <h1>tabtune</h1>
          <p className="tagline">Fine-tune a language model in this tab, on your own GPU.</p>
        </div>
        <ThemeSwitch />
      </header>
      <DeviceLostBanner />
      <TabLockNotice />
      <main id="main" tabIndex={-1}>
        {gpuState === 'unavailable' ? (
          <NoWebGpu />
        ) : (
          <>
            <ShareOffer />
            <ResumeOffer />
            <div className="panels">
              <div className="column">
                <ModelPanel />
                <MethodPanel />
                <DevicePanel />
              </div>
              <div className="column">
                <DataPanel />
                <TrainPanel />
                <ExportPanel />
                <Playground />
                <SharePanel />
              </div>
            </div>
          </>
        )}
      </main>
    </div>
  );
}
