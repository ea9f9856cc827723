// The validation split's size (src/worker/calls/trainingSplit.ts).

import { expect, it } from 'vitest';
import { MAX_VALIDATION_EXAMPLES, validationExampleCount } from '../../../src/worker/calls/trainingSplit.ts';

it('holds nothing out of fewer than 10 examples, or at share 0', () => {
  expect([0, 1, 3, 9].map((n) => validationExampleCount(n, 0.1))).toEqual([0, 0, 0, 0]);
  expect(validationExampleCount(1000, 0)).toBe(0);
});

it('holds out round(share × n), at least one, at most the cap', () => {
  expect(validationExampleCount(10, 0.1)).toBe(1);
  expect(validationExampleCount(10, 0.01)).toBe(1);
  expect(validationExampleCount(24, 0.1)).toBe(2);
  expect(validationExampleCount(25, 0.1)).toBe(3);
  expect(validationExampleCount(100, 0.5)).toBe(50);
  expect(validationExampleCount(100_000, 0.1)).toBe(MAX_VALIDATION_EXAMPLES);
});

it('refuses shares outside [0, 0.5] and bad counts', () => {
  for (const share of [-0.1, 0.6, NaN]) expect(() => validationExampleCount(20, share)).toThrow(/validation share/);
  expect(() => validationExampleCount(2.5, 0.1)).toThrow(RangeError);
});
