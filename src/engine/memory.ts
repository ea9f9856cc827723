// GPU memory accounting by category, so a user sees what each part of fine-tuning holds (and what
// QLoRA saved). Every live tensor that owns a buffer counts once, under the category it was given.

export const MEMORY_CATEGORIES = ['frozenWeights', 'quantState', 'adapters', 'gradients', 'optimizerState', 'activations'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

export type MemoryReport = Record<MemoryCategory, number> & { total: number };

export function emptyMemoryReport(): MemoryReport {
  const report = { total: 0 } as MemoryReport;
  for (const category of MEMORY_CATEGORIES) report[category] = 0;
  return report;
}
