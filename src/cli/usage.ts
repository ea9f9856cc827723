// Command-line plumbing shared by the commands: strict option parsing and the error type for misuse.

import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake in how the command was called: printed as one line, never with a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Parse `args` strictly (unknown options are errors), with `--json` always allowed. */
export function parseOptions<T extends OptionSpec>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, json: { type: 'boolean' } }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`${command}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function requireOption(command: string, name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`${command}: --${name} is required`);
  return value;
}

/** A positive integer option, or its default. */
export function integerOption(command: string, name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) throw new UsageError(`${command}: --${name} must be a positive integer, got '${value}'`);
  return parsed;
}

/** Progress and notes go to stderr, so that stdout holds only the result (one JSON object with --json). */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}
