// Generation from an exported .onnx file with ONNX Runtime Web on WebGPU, next to the engine: the file the user
// picked or the last ONNX export the worker keeps, checked (onnx/onnxInterface.ts) before the runtime sees it,
// then run with the loaded model's tokenizer, prompt encoding, stop tokens and sampling, re-running the growing
// sequence every step (the exported graph has no KV cache). The session of the last file is kept, so running the
// same file again skips loading and compiling it.

import { engineState, requireLoaded, type CallContext, type KeptFile } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import { checkGenerationInterface, checkVocab, OnnxFileError, readOnnxInterface, type GenerationInterface } from '../onnx/onnxInterface.ts';
import { createWebgpuSession, type WebgpuSession } from '../onnx/ortWebgpu.ts';
import { generateByRecomputing } from '../onnx/recomputeGenerate.ts';
import type { OnnxGenerateRequest, OnnxSessionInfo, OnnxSource, Result } from '../protocol.ts';
import { encodePrompt, streamedGeneration } from './generate.ts';

/** The session kept between runs, with what identifies its file. */
interface KeptSession {
  /** A picked file's name, size and modification time, or the kept export itself. */
  identity: string | KeptFile;
  fileName: string;
  graph: GenerationInterface;
  webgpu: WebgpuSession;
}

let kept: KeptSession | null = null;

export function keptOnnxCall(): Result<'keptOnnx'> {
  const file = engineState.lastOnnx;
  return file ? { fileName: file.fileName, bytes: file.bytes.byteLength } : null;
}

/** The file a source names: what identifies it for the kept session, its name, and how to read it. */
function resolveSource(source: OnnxSource): { identity: string | KeptFile; fileName: string; read: () => Promise<Uint8Array> } {
  if (source?.kind === 'lastExport') {
    const file = engineState.lastOnnx;
    if (!file) throw new BadRequestError('there is no ONNX export to run: export the model as ONNX first, or pick an .onnx file');
    return { identity: file, fileName: file.fileName, read: async () => file.bytes };
  }
  if (source?.kind !== 'file' || typeof File === 'undefined' || !(source.file instanceof File)) throw new BadRequestError('pick an .onnx file to run');
  const { file } = source;
  return { identity: `${file.name}\u0000${file.size}\u0000${file.lastModified}`, fileName: file.name, read: async () => new Uint8Array(await file.arrayBuffer()) };
}

async function sessionFor(source: OnnxSource, tokenizerVocab: number): Promise<{ session: KeptSession; sessionMs: number }> {
  const { identity, fileName, read } = resolveSource(source);
  if (kept && kept.identity === identity) {
    if (kept.graph.vocab !== null) checkVocab(kept.fileName, kept.graph.vocab, tokenizerVocab);
    return { session: kept, sessionMs: 0 };
  }
  const started = performance.now();
  const bytes = await read();
  if (bytes.byteLength === 0) throw new OnnxFileError(fileName, 'is empty, not an ONNX model');
  const graph = checkGenerationInterface(readOnnxInterface(bytes, fileName), fileName, tokenizerVocab);
  await releaseKept();
  const webgpu = await createWebgpuSession(bytes, fileName);
  kept = { identity, fileName, graph, webgpu };
  return { session: kept, sessionMs: performance.now() - started };
}

async function releaseKept(): Promise<void> {
  const previous = kept;
  kept = null;
  await previous?.webgpu.session.release();
}

/** The logits row [V] of the last position, one run of the whole sequence; the output's shape is checked. */
function lastLogitsOf(session: KeptSession, tokenizerVocab: number) {
  const { ort, session: ortSession } = session.webgpu;
  const { inputName, outputName } = session.graph;
  return async (ids: readonly number[]): Promise<Float32Array> => {
    const input = new ort.Tensor('int64', BigInt64Array.from(ids, (id) => BigInt(id)), [1, ids.length]);
    const outputs = await ortSession.run({ [inputName]: input });
    const logits = outputs[outputName];
    const [batch, positions, vocab] = logits.dims;
    if (logits.type !== 'float32' || logits.dims.length !== 3 || batch !== 1 || positions !== ids.length) {
      throw new OnnxFileError(session.fileName, `for input ids [1, ${ids.length}] the model returned ${logits.type} [${logits.dims.join(', ')}], not logits float32 [1, ${ids.length}, vocab]`, {
        field: 'graph.output',
      });
    }
    checkVocab(session.fileName, vocab, tokenizerVocab);
    const data = logits.data as Float32Array;
    return data.slice((positions - 1) * vocab, positions * vocab);
  };
}

export async function onnxGenerateCall(payload: OnnxGenerateRequest, ctx: CallContext): Promise<Result<'onnxGenerate'>> {
  const loaded = requireLoaded();
  const { tokenizer, model } = loaded;
  const started = performance.now();
  // The context of the model the file was exported from: the loaded one, whose tokenizer it must share.
  const contextLength = model.config.maxPositions;
  const promptIds = encodePrompt(loaded, payload.prompt, payload.useChatTemplate, contextLength);
  const { session, sessionMs } = await sessionFor(payload.source, tokenizer.vocabSize);
  ctx.signal.throwIfAborted();
  const info: OnnxSessionInfo = { fileName: session.fileName, executionProvider: session.webgpu.executionProvider, adapter: session.webgpu.adapter, sessionMs };
  ctx.emit({ type: 'onnxSession', ...info });
  const { options, finish } = streamedGeneration(loaded, payload.sampling, ctx, started);
  const result = await generateByRecomputing(lastLogitsOf(session, tokenizer.vocabSize), promptIds, { ...options, vocabLimit: tokenizer.vocabSize, contextLength });
  return { ...info, ...finish(result) };
}
