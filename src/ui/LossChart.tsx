// The loss chart: the loss history as a polyline of at most CHART_POINTS points, redrawn through a store
// subscription, so thousands of steps cost no React render each.

import { useEffect, useRef } from 'react';
import { useApp } from '../store/index.ts';

/** Chart size in SVG units; at most this many points are drawn (every k-th loss when there are more). */
const CHART_W = 300;
const CHART_H = 80;
const CHART_POINTS = 600;

function polylinePoints(losses: readonly number[]): string {
  if (losses.length === 0) return '';
  const stride = Math.ceil(losses.length / CHART_POINTS);
  const shown: number[] = [];
  for (let i = 0; i < losses.length; i += stride) shown.push(losses[i]);
  if ((losses.length - 1) % stride !== 0) shown.push(losses[losses.length - 1]);
  const lo = Math.min(...shown);
  const hi = Math.max(...shown);
  const span = hi - lo || 1;
  const dx = shown.length > 1 ? CHART_W / (shown.length - 1) : 0;
  return shown.map((loss, i) => `${(i * dx).toFixed(1)},${(CHART_H - 2 - ((loss - lo) / span) * (CHART_H - 4)).toFixed(1)}`).join(' ');
}

/** The loss history as a polyline, redrawn through a store subscription (no React render per update). */
export function LossChart() {
  const line = useRef<SVGPolylineElement>(null);
  useEffect(() => {
    const draw = (losses: readonly number[]) => line.current?.setAttribute('points', polylinePoints(losses));
    draw(useApp.getState().training.lossHistory);
    return useApp.subscribe((state, previous) => {
      if (state.training.lossHistory !== previous.training.lossHistory) draw(state.training.lossHistory);
    });
  }, []);
  return (
    <svg className="loss-chart" data-testid="loss-chart" viewBox={`0 0 ${CHART_W} ${CHART_H}`} preserveAspectRatio="none" role="img" aria-label="Training loss by step">
      <polyline ref={line} fill="none" stroke="currentColor" strokeWidth={1.5} vectorEffect="non-scaling-stroke" />
    </svg>
  );
}
