// The loss chart's geometry (src/ui/lossChartPoints.ts): both series in one frame against the step number, thinned
// long series, and the chart's description in words.

import { expect, it } from 'vitest';
import { chartFrame, describeLosses, polylinePoints, thin } from '../../src/ui/lossChartPoints.ts';
import type { LossPoint } from '../../src/worker/protocol.ts';

const points = (pairs: [number, number][]): LossPoint[] => pairs.map(([step, loss]) => ({ step, loss }));

it('places training and validation points by step in one frame', () => {
  const training = points([[1, 4], [2, 3], [3, 2], [4, 1]]);
  const validation = points([[2, 3.5], [4, 2.5]]);
  const frame = chartFrame([training, validation], 8, 300, 80);
  expect(frame).toEqual({ width: 300, height: 80, steps: 8, lo: 1, hi: 4 });
  // x = step / 8 × 300; y = 78 − (loss − 1) / 3 × 76
  expect(polylinePoints(training, frame)).toBe('37.5,2.0 75.0,27.3 112.5,52.7 150.0,78.0');
  expect(polylinePoints(validation, frame)).toBe('75.0,14.7 150.0,40.0');
});

it('widens the x axis when the steps run past the planned count, and copes with no points', () => {
  expect(chartFrame([points([[12, 2]])], 10, 300, 80).steps).toBe(12);
  expect(chartFrame([[], []], 0, 300, 80)).toEqual({ width: 300, height: 80, steps: 1, lo: 0, hi: 1 });
  // A flat series sits on the bottom line instead of dividing by zero.
  const flat = points([[1, 2], [2, 2]]);
  expect(polylinePoints(flat, chartFrame([flat], 2, 300, 80))).toBe('150.0,78.0 300.0,78.0');
});

it('thins a long series to at most maxPoints, keeping the first and last', () => {
  const long = Array.from({ length: 5000 }, (_, i) => ({ step: i + 1, loss: 1 / (i + 1) }));
  const shown = thin(long, 600);
  expect(shown.length).toBeLessThanOrEqual(601);
  expect(shown[0]).toEqual(long[0]);
  expect(shown[shown.length - 1]).toEqual(long[4999]);
  expect(thin(long.slice(0, 10), 600)).toEqual(long.slice(0, 10));
});

it('describes the losses in words', () => {
  expect(describeLosses([], [])).toBe('Loss by step: no steps yet');
  expect(describeLosses(points([[1, 3.14159], [20, 1.23456]]), points([[10, 2.5], [20, 2.25]]))).toBe(
    'Loss by step: training 3.142 at step 1, 1.235 at step 20; validation 2.250 at step 20',
  );
});
