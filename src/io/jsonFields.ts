// Typed access to the fields of one JSON object from the strict parser (config.json, adapter configs):
// every failure is the format's own FormatError naming the file and the dotted field path. Formats
// extend it with their own kinds of field (sizes, token ids, layer lists).

import { FormatError, quoteName, type FormatErrorLocation } from './errors.ts';
import { decodeUtf8Strict, describeJson, JsonNumber, parseStrictJson, StrictJsonError, type JsonObject, type JsonValue } from './strictJson.ts';

export type FormatErrorClass = new (file: string, detail: string, where?: FormatErrorLocation, options?: { cause?: unknown }) => FormatError;

/**
 * A small JSON file (config.json, adapter_config.json) as a JSON object: size-capped, strict UTF-8 with an
 * optional BOM, strict JSON; every problem is `errorClass` naming the file and the field.
 */
export function parseJsonObjectFile(input: string | Uint8Array, file: string, maxBytes: number, errorClass: FormatErrorClass): JsonObject {
  if (input.length > maxBytes) throw new errorClass(file, `is larger than ${maxBytes} bytes`, { field: 'file size' });
  let text = typeof input === 'string' ? input : decodeUtf8Strict(input);
  if (text === null) throw new errorClass(file, 'is not valid UTF-8', { field: 'file' });
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    const field = error.key !== undefined ? [...error.path, error.key].join('.') : error.path.join('.') || 'file';
    throw new errorClass(file, `is not valid JSON: ${error.message}`, { field }, { cause: error });
  }
  if (!(json instanceof Map)) throw new errorClass(file, `must hold a JSON object, not ${describeJson(json)}`, { field: 'file' });
  return json;
}

export class JsonFields {
  constructor(
    readonly file: string,
    protected readonly json: JsonObject,
    protected readonly prefix: string,
    private readonly errorClass: FormatErrorClass,
  ) {}

  fail(name: string, why: string): never {
    const field = this.prefix + name;
    throw new this.errorClass(this.file, `field ${quoteName(field)} ${why}`, { field });
  }

  keys(): string[] {
    return [...this.json.keys()];
  }

  raw(name: string): JsonValue | undefined {
    return this.json.get(name);
  }

  /** Present and not null (Python writers use null for "use the default"). */
  present(name: string): boolean {
    const value = this.json.get(name);
    return value !== undefined && value !== null;
  }

  protected required(name: string): JsonValue {
    const value = this.json.get(name);
    if (value === undefined || value === null) this.fail(name, value === null ? 'is null' : 'is missing');
    return value;
  }

  string(name: string): string {
    const value = this.required(name);
    if (typeof value !== 'string') this.fail(name, `must be a string, got ${describeJson(value)}`);
    return value;
  }

  optionalString(name: string): string | null {
    return this.present(name) ? this.string(name) : null;
  }

  /** A boolean; `fallback` when absent (required when there is no fallback). */
  bool(name: string, fallback?: boolean): boolean {
    if (fallback !== undefined && !this.present(name)) return fallback;
    const value = this.required(name);
    if (typeof value !== 'boolean') this.fail(name, `must be true or false, got ${describeJson(value)}`);
    return value;
  }

  number(name: string): number {
    return this.numberValue(name, this.required(name));
  }

  protected numberValue(name: string, value: JsonValue): number {
    if (!(value instanceof JsonNumber)) this.fail(name, `must be a number, got ${describeJson(value)}${typeof value === 'string' ? ` (${quoteName(value)})` : ''}`);
    if (!Number.isFinite(value.value)) this.fail(name, `is not a finite number (${value.text})`);
    return value.value;
  }

  /** The nested object `name`, with the same kind of accessor. */
  object(name: string): this {
    const value = this.required(name);
    if (!(value instanceof Map)) this.fail(name, `must be an object, got ${describeJson(value)}`);
    const Same = this.constructor as new (file: string, json: JsonObject, prefix: string, errorClass: FormatErrorClass) => this;
    return new Same(this.file, value, `${this.prefix}${name}.`, this.errorClass);
  }
}
