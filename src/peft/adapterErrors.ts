// Typed errors of adapter files (PEFT's adapter_config.json and adapter_model.safetensors). Each names the
// file and, as `field` or `tensor`, what is wrong in it (FormatError's convention).

import { FormatError } from '../io/errors.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The adapter folder lacks a file, or offers only a pickle (never opened). */
export class AdapterFilesError extends FormatError {}

/** adapter_config.json is malformed, or a value is out of range or does not fit the model. */
export class AdapterConfigError extends FormatError {}

/** An option tabtune does not implement (another peft_type, DoRA, modules_to_save, ...), refused by name. */
export class UnsupportedAdapterError extends AdapterConfigError {}

/** A tensor of adapter_model.safetensors that is unknown, misnamed, mis-shaped, unpaired or of the wrong dtype. */
export class AdapterTensorError extends FormatError {}

/** NaN or ±Inf in adapter weights: never written, never loaded. */
export class NonFiniteAdapterError extends AdapterTensorError {}
