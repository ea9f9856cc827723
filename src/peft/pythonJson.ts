// Python's json.dumps(value, indent=2, sort_keys=True) byte for byte (how PEFT writes adapter_config.json):
// keys sorted by code point, ", " never used (item separator "," then a newline), ": " between key and
// value, empty containers as {} and [], non-ASCII escaped as \uXXXX (ensure_ascii), floats as repr().
// JavaScript numbers do not say int or float: integers are written as ints, PyFloat marks a float.

import { pythonFloatRepr } from '../quant/bnbLayout.ts';

/** A value Python holds as a float (0 is written 0.0). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type PyJson = null | boolean | string | number | PyFloat | readonly PyJson[] | { readonly [key: string]: PyJson };

export function pythonJsonDumps(value: PyJson, indent = 2): string {
  return dump(value, indent, 0);
}

function dump(value: PyJson, indent: number, level: number): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return pythonString(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`pythonJsonDumps: ${value} is not an integer; wrap floats in PyFloat`);
    return String(value);
  }
  if (value instanceof PyFloat) return pythonFloatRepr(value.value);
  const inner = ' '.repeat(indent * (level + 1));
  const outer = ' '.repeat(indent * level);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((item: PyJson) => inner + dump(item, indent, level + 1)).join(',\n')}\n${outer}]`;
  }
  const entries = Object.entries(value as { [key: string]: PyJson }).sort(([a], [b]) => compareCodePoints(a, b));
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([key, item]) => `${inner}${pythonString(key)}: ${dump(item, indent, level + 1)}`).join(',\n')}\n${outer}}`;
}

/** json.dumps of a str with ensure_ascii: JSON escapes, then every non-ASCII UTF-16 unit as \uXXXX. */
export function pythonString(text: string): string {
  return JSON.stringify(text).replace(/[\u007f-\uffff]/g, (c) => (c === '\u007f' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** Python sorts str keys by code point; UTF-16 order differs only above the BMP. */
function compareCodePoints(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
