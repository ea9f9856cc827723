// A strict JSON parser for headers and indexes of model files: objects come back as Maps (no
// prototype, so `__proto__` is plain data), duplicate keys are refused at every level (JSON.parse keeps
// the last one silently), numbers keep their literal so callers can insist on plain integers, and
// nesting is bounded.

import { quoteName } from './errors.ts';

/** A JSON number with the literal it was written as, so callers can insist on plain integer literals. */
export class JsonNumber {
  constructor(readonly text: string, readonly value: number) {}
}

/** JSON values as the strict parser returns them: objects are Maps (insertion order, no prototype). */
export type JsonValue = string | JsonNumber | boolean | null | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** Raised by {@link parseStrictJson}; callers turn it into the typed error of their format. */
export class StrictJsonError extends Error {
  constructor(
    readonly kind: 'syntax' | 'duplicate',
    readonly detail: string,
    /** Keys from the top-level object down to the object holding the fault. */
    readonly path: readonly string[],
    /** For `duplicate`: the repeated key. */
    readonly key: string | undefined,
  ) {
    super(detail);
    this.name = 'StrictJsonError';
  }
}

const MAX_JSON_DEPTH = 64;

/**
 * RFC 8259 JSON, parsed strictly: duplicate keys refused at every level, lone surrogates refused, nesting
 * limited to 64 levels (no stack exhaustion on hostile input), objects returned as Maps.
 */
export function parseStrictJson(text: string): JsonValue {
  const parser = new StrictJsonParser(text);
  parser.skipWhitespace();
  const value = parser.parseValue(0);
  parser.skipWhitespace();
  if (parser.pos !== text.length) parser.fail('unexpected text after the JSON value');
  return value;
}

class StrictJsonParser {
  pos = 0;
  private readonly path: string[] = [];

  constructor(private readonly text: string) {}

  fail(detail: string): never {
    throw new StrictJsonError('syntax', `${detail} at character ${this.pos}`, this.path.slice(), undefined);
  }

  skipWhitespace(): void {
    const s = this.text;
    let p = this.pos;
    while (p < s.length) {
      const c = s.charCodeAt(p);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      p++;
    }
    this.pos = p;
  }

  parseValue(depth: number): JsonValue {
    if (this.pos >= this.text.length) this.fail('unexpected end of JSON');
    const c = this.text.charCodeAt(this.pos);
    if (c === 0x7b) return this.parseObject(depth + 1); // {
    if (c === 0x5b) return this.parseArray(depth + 1); // [
    if (c === 0x22) return this.parseString(); // "
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
    if (this.text.startsWith('true', this.pos)) return this.literal(4, true);
    if (this.text.startsWith('false', this.pos)) return this.literal(5, false);
    if (this.text.startsWith('null', this.pos)) return this.literal(4, null);
    return this.fail(`unexpected character ${JSON.stringify(this.text[this.pos])}`);
  }

  private literal<T>(length: number, value: T): T {
    this.pos += length;
    return value;
  }

  private parseObject(depth: number): JsonObject {
    if (depth > MAX_JSON_DEPTH) this.fail(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
    this.pos++; // {
    const map: JsonObject = new Map();
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return map;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x22) this.fail('expected a string key');
      const key = this.parseString();
      if (map.has(key)) {
        throw new StrictJsonError('duplicate', `duplicate key ${quoteName(key)}`, this.path.slice(), key);
      }
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail("expected ':' after a key");
      this.pos++;
      this.skipWhitespace();
      this.path.push(key);
      const value = this.parseValue(depth);
      this.path.pop();
      map.set(key, value);
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return map;
      }
      this.fail("expected ',' or '}' in an object");
    }
  }

  private parseArray(depth: number): JsonValue[] {
    if (depth > MAX_JSON_DEPTH) this.fail(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
    this.pos++; // [
    const items: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return items;
    }
    for (;;) {
      this.skipWhitespace();
      items.push(this.parseValue(depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return items;
      }
      this.fail("expected ',' or ']' in an array");
    }
  }

  private parseNumber(): JsonNumber {
    const s = this.text;
    const start = this.pos;
    let p = start;
    const digit = (i: number) => {
      const c = s.charCodeAt(i);
      return c >= 0x30 && c <= 0x39;
    };
    if (s.charCodeAt(p) === 0x2d) p++;
    if (s.charCodeAt(p) === 0x30) p++;
    else if (digit(p)) while (digit(p)) p++;
    else {
      this.pos = p;
      this.fail('invalid number');
    }
    if (s.charCodeAt(p) === 0x2e) {
      p++;
      if (!digit(p)) {
        this.pos = p;
        this.fail('invalid number: no digit after the decimal point');
      }
      while (digit(p)) p++;
    }
    const e = s.charCodeAt(p);
    if (e === 0x65 || e === 0x45) {
      p++;
      const sign = s.charCodeAt(p);
      if (sign === 0x2b || sign === 0x2d) p++;
      if (!digit(p)) {
        this.pos = p;
        this.fail('invalid number: no digit in the exponent');
      }
      while (digit(p)) p++;
    }
    this.pos = p;
    const literal = s.slice(start, p);
    return new JsonNumber(literal, Number(literal));
  }

  parseString(): string {
    const s = this.text;
    let p = this.pos + 1; // after the opening quote
    let out = '';
    let runStart = p;
    for (;;) {
      if (p >= s.length) {
        this.pos = p;
        this.fail('unterminated string');
      }
      const c = s.charCodeAt(p);
      if (c === 0x22) {
        out += s.slice(runStart, p);
        this.pos = p + 1;
        return out;
      }
      if (c < 0x20) {
        this.pos = p;
        this.fail('control character in a string');
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // Raw surrogates only arrive when the caller passed a JS string; they must pair up.
        const next = s.charCodeAt(p + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          p += 2;
          continue;
        }
        this.pos = p;
        this.fail('unpaired surrogate in a string');
      }
      if (c !== 0x5c) {
        p++;
        continue;
      }
      out += s.slice(runStart, p);
      const escape = s.charCodeAt(p + 1);
      switch (escape) {
        case 0x22: out += '"'; p += 2; break;
        case 0x5c: out += '\\'; p += 2; break;
        case 0x2f: out += '/'; p += 2; break;
        case 0x62: out += '\b'; p += 2; break;
        case 0x66: out += '\f'; p += 2; break;
        case 0x6e: out += '\n'; p += 2; break;
        case 0x72: out += '\r'; p += 2; break;
        case 0x74: out += '\t'; p += 2; break;
        case 0x75: {
          const unit = this.hex4(p + 2);
          p += 6;
          if (unit >= 0xdc00 && unit <= 0xdfff) {
            this.pos = p - 6;
            this.fail('unpaired low surrogate escape in a string');
          }
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (s.charCodeAt(p) !== 0x5c || s.charCodeAt(p + 1) !== 0x75) {
              this.pos = p - 6;
              this.fail('unpaired high surrogate escape in a string');
            }
            const low = this.hex4(p + 2);
            if (low < 0xdc00 || low > 0xdfff) {
              this.pos = p;
              this.fail('unpaired high surrogate escape in a string');
            }
            out += String.fromCharCode(unit, low);
            p += 6;
          } else {
            out += String.fromCharCode(unit);
          }
          break;
        }
        default:
          this.pos = p;
          this.fail('invalid escape in a string');
      }
      runStart = p;
    }
  }

  private hex4(at: number): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.text.charCodeAt(at + i);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else {
        this.pos = at + i;
        this.fail('invalid \\u escape in a string');
      }
      value = value * 16 + d;
    }
    return value;
  }
}

/** Why a JSON value is not a non-negative safe integer written as a plain literal, or null if it is one. */
export function nonNegativeIntegerProblem(value: JsonValue | undefined): string | null {
  if (value === undefined) return 'is missing';
  if (!(value instanceof JsonNumber)) return `is ${describeJson(value)}, not an integer`;
  const t = value.text;
  if (t.startsWith('-')) return `is negative (${t})`;
  if (t.includes('.')) return `is fractional (${t})`;
  if (t.includes('e') || t.includes('E')) return `is not a plain integer (${t})`;
  if (!Number.isSafeInteger(value.value)) return `is larger than 2^53 − 1 (${t.length > 40 ? `${t.slice(0, 40)}…` : t})`;
  return null;
}

/** A short description of a JSON value's type for messages. */
export function describeJson(value: JsonValue): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'boolean') return 'a boolean';
  if (value instanceof JsonNumber) return `the number ${value.text.length > 40 ? `${value.text.slice(0, 40)}…` : value.text}`;
  if (Array.isArray(value)) return 'an array';
  return 'an object';
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode UTF-8 strictly (no BOM stripping, no replacement characters); null when the bytes are not UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}
