// The loss chart's geometry: training and validation losses against the step number, in one frame so both series
// align (x: step 0 .. the run's steps; y: the lowest .. highest loss shown, top = highest). A long series is thinned
// to at most `maxPoints` points (every k-th, always keeping the last), so a redraw costs the same after thousands
// of steps. Pure functions; LossChart.tsx puts the results into the SVG.

import type { LossPoint } from '../worker/protocol.ts';

export interface ChartFrame {
  width: number;
  height: number;
  /** The x axis runs from step 0 to this. */
  steps: number;
  lo: number;
  hi: number;
}

/** Every k-th point so that at most `maxPoints` remain, always with the last. */
export function thin(points: readonly LossPoint[], maxPoints: number): LossPoint[] {
  if (points.length <= maxPoints) return [...points];
  const stride = Math.ceil(points.length / maxPoints);
  const shown: LossPoint[] = [];
  for (let i = 0; i < points.length; i += stride) shown.push(points[i]);
  if ((points.length - 1) % stride !== 0) shown.push(points[points.length - 1]);
  return shown;
}

/** The frame that holds both series (already thinned) for a run of `steps` steps. */
export function chartFrame(series: readonly (readonly LossPoint[])[], steps: number, width: number, height: number): ChartFrame {
  let lo = Infinity;
  let hi = -Infinity;
  let lastStep = 0;
  for (const points of series) {
    for (const { step, loss } of points) {
      if (loss < lo) lo = loss;
      if (loss > hi) hi = loss;
      if (step > lastStep) lastStep = step;
    }
  }
  if (lo > hi) [lo, hi] = [0, 1];
  return { width, height, steps: Math.max(1, steps, lastStep), lo, hi };
}

/** SVG polyline points of a series in the frame (2 units of margin top and bottom). */
export function polylinePoints(points: readonly LossPoint[], frame: ChartFrame): string {
  const span = frame.hi - frame.lo || 1;
  const usable = frame.height - 4;
  return points
    .map(({ step, loss }) => {
      const x = (step / frame.steps) * frame.width;
      const y = frame.height - 2 - ((loss - frame.lo) / span) * usable;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

const shown = (loss: number) => loss.toPrecision(4);

/** The chart in words, for its accessible name: first and last training loss, the latest validation loss. */
export function describeLosses(training: readonly LossPoint[], validation: readonly LossPoint[]): string {
  if (training.length === 0) return 'Loss by step: no steps yet';
  const first = training[0];
  const last = training[training.length - 1];
  let text = `Loss by step: training ${shown(first.loss)} at step ${first.step}, ${shown(last.loss)} at step ${last.step}`;
  const latest = validation[validation.length - 1];
  if (latest) text += `; validation ${shown(latest.loss)} at step ${latest.step}`;
  return text;
}
