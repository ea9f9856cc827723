// Typed errors raised by the file-format readers and writers (safetensors, shard index).
// Every error names the file and, where there is one, the field or tensor at fault, both as
// properties (for the UI and tests) and in the message (for people). Callers catch these by class.

/** Where in a file an error was found. */
export interface FormatErrorLocation {
  /** The header field, JSON path or key at fault, e.g. `header length`, `__metadata__.format`, `weight_map`. */
  field?: string;
  /** The tensor whose entry is at fault. */
  tensor?: string;
}

const MAX_SHOWN = 200;

/**
 * Quote a name for a message: JSON string syntax (so control characters, quotes and odd spaces are visible
 * and cannot forge message text), cut after 200 characters.
 */
export function quoteName(name: string): string {
  const shown = name.length > MAX_SHOWN ? `${name.slice(0, MAX_SHOWN)}…` : name;
  return JSON.stringify(shown);
}

/** Base class: a file that does not follow its format, or input a writer refuses to encode. */
export class FormatError extends Error {
  readonly file: string;
  readonly field: string | undefined;
  readonly tensor: string | undefined;

  /** `detail` should already name the field or tensor; the file name is prefixed here. */
  constructor(file: string, detail: string, where: FormatErrorLocation = {}, options?: { cause?: unknown }) {
    super(`${quoteName(file)}: ${detail}`, options);
    this.name = new.target.name;
    this.file = file;
    this.field = where.field;
    this.tensor = where.tensor;
  }
}

/** The file is shorter than the 8-byte length prefix. */
export class FileTooSmallError extends FormatError {}

/** The declared header length is over the cap, runs past the end of the file, or does not fit in 64 bits of safe integer. */
export class HeaderLengthError extends FormatError {}

/** The header is not UTF-8, not JSON, not an object, or an entry is not shaped as the format requires. */
export class HeaderParseError extends FormatError {}

/** A dtype that is unknown or that tabtune does not support: "unsupported dtype X in tensor Y". */
export class UnsupportedDtypeError extends FormatError {}

/** A shape with a negative, fractional, non-integer or unsafe entry, or whose element count overflows. */
export class TensorShapeError extends FormatError {}

/** Data offsets that overlap, leave gaps, do not start at 0, have end < begin, or are not safe integers. */
export class OffsetError extends FormatError {}

/** The file ends before the data its header declares (a download cut short): a kind of offset error. */
export class IncompleteFileError extends OffsetError {}

/** Bytes after the end of the last tensor. */
export class TrailingDataError extends FormatError {}

/** A tensor's byte length differs from its element count × dtype size, or data given to the writer has the wrong length. */
export class TensorSizeError extends FormatError {}

/** The same tensor name (or the same JSON key) appears twice. */
export class DuplicateNameError extends FormatError {}

/** `__metadata__` that is not an object of string values. */
export class MetadataError extends FormatError {}

/** A tensor asked for by name that the file does not contain. */
export class TensorNotFoundError extends FormatError {}

/** The bytes could not be read at all (missing file, permission, I/O error). */
export class FileReadError extends FormatError {}

/** A `model.safetensors.index.json` that is malformed or names shard files that are unsafe or inconsistent. */
export class ShardIndexError extends FormatError {}
