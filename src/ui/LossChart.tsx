// The loss chart: training loss (solid) and validation loss (dashed) against the step number, with the highest and
// lowest loss shown at the left edge. Redrawn through a store subscription (no React render per update), at most
// CHART_POINTS points per series (lossChartPoints.ts), so thousands of steps cost what a few hundred do.

import { useEffect, useRef } from 'react';
import { useApp, type AppState } from '../store/index.ts';
import { chartFrame, describeLosses, polylinePoints, thin } from './lossChartPoints.ts';
import './LossChart.css';

/** Chart size in SVG units. */
const CHART_W = 300;
const CHART_H = 80;
const CHART_POINTS = 600;

function runSteps(state: AppState): number {
  return state.training.progress?.steps ?? state.training.steps;
}

export function LossChart() {
  const svg = useRef<SVGSVGElement>(null);
  const trainLine = useRef<SVGPolylineElement>(null);
  const validationLine = useRef<SVGPolylineElement>(null);
  const top = useRef<HTMLSpanElement>(null);
  const bottom = useRef<HTMLSpanElement>(null);
  useEffect(() => {
    const draw = (state: AppState) => {
      const { lossHistory, validationHistory } = state.training;
      const training = thin(lossHistory, CHART_POINTS);
      const validation = thin(validationHistory, CHART_POINTS);
      const frame = chartFrame([training, validation], runSteps(state), CHART_W, CHART_H);
      trainLine.current?.setAttribute('points', polylinePoints(training, frame));
      validationLine.current?.setAttribute('points', polylinePoints(validation, frame));
      svg.current?.setAttribute('aria-label', describeLosses(lossHistory, validationHistory));
      const any = training.length + validation.length > 0;
      if (top.current) top.current.textContent = any ? frame.hi.toPrecision(3) : '';
      if (bottom.current) bottom.current.textContent = any ? frame.lo.toPrecision(3) : '';
    };
    draw(useApp.getState());
    return useApp.subscribe((state, previous) => {
      const now = state.training;
      const before = previous.training;
      if (now.lossHistory !== before.lossHistory || now.validationHistory !== before.validationHistory || runSteps(state) !== runSteps(previous)) draw(state);
    });
  }, []);
  return (
    <figure className="loss-figure">
      <div className="loss-plot">
        <svg ref={svg} className="loss-chart" data-testid="loss-chart" viewBox={`0 0 ${CHART_W} ${CHART_H}`} preserveAspectRatio="none" role="img" aria-label="Loss by step: no steps yet">
          <polyline ref={trainLine} className="loss-train" fill="none" strokeWidth={1.5} vectorEffect="non-scaling-stroke" />
          <polyline ref={validationLine} className="loss-validation" fill="none" strokeWidth={1.5} strokeDasharray="4 3" vectorEffect="non-scaling-stroke" />
        </svg>
        <span ref={top} className="loss-axis loss-axis-top" aria-hidden="true" />
        <span ref={bottom} className="loss-axis loss-axis-bottom" aria-hidden="true" />
      </div>
      <figcaption className="loss-legend">
        <span className="loss-key loss-key-train">training</span>
        <span className="loss-key loss-key-validation">validation</span>
        <span className="loss-key-axis">x: step</span>
      </figcaption>
    </figure>
  );
}
