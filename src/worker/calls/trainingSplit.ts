// How many examples a run holds out for its validation loss. A pasted handful of lines is all training data (a
// split of three examples would leave little to learn from and a meaningless validation number); from
// MIN_EXAMPLES_FOR_VALIDATION examples on, round(share × examples) are held out, at least one and at most
// MAX_VALIDATION_EXAMPLES (evaluating more costs time on every evaluation and says little more).

export const MIN_EXAMPLES_FOR_VALIDATION = 10;
export const MAX_VALIDATION_EXAMPLES = 200;
export const MAX_VALIDATION_SHARE = 0.5;
export const DEFAULT_VALIDATION_SHARE = 0.1;

/** RangeError unless the share is a number in [0, MAX_VALIDATION_SHARE]. */
export function checkValidationShare(share: number): void {
  if (typeof share !== 'number' || !(share >= 0 && share <= MAX_VALIDATION_SHARE)) {
    throw new RangeError(`the validation share must be a number in [0, ${MAX_VALIDATION_SHARE}], got ${share}`);
  }
}

/** Examples held out of `examples` for validation at `share` (see the file header). */
export function validationExampleCount(examples: number, share: number): number {
  checkValidationShare(share);
  if (!Number.isSafeInteger(examples) || examples < 0) throw new RangeError(`the example count must be a non-negative integer, got ${examples}`);
  if (share === 0 || examples < MIN_EXAMPLES_FOR_VALIDATION) return 0;
  return Math.min(MAX_VALIDATION_EXAMPLES, Math.max(1, Math.round(share * examples)));
}
