// Typed errors raised by the engine for misuse that would otherwise give silently wrong results.

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Operand shapes that do not fit together; the message names the op and both shapes. */
export class ShapeError extends EngineError {}

/** A tensor used after dispose() or after its scope ended. */
export class DestroyedTensorError extends EngineError {}

/** A dtype an op does not accept. */
export class DTypeError extends EngineError {}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
