// Reading numeric inputs: an empty or non-numeric field keeps the previous value.

export function numberOr(text: string, fallback: number): number {
  const value = Number(text);
  return text.trim() !== '' && Number.isFinite(value) ? value : fallback;
}
