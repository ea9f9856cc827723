// The tabtune CLI: `npm run -s tabtune -- <command> [options]`. The same engine as the app, on Dawn.
// With --json a command prints exactly one JSON object on stdout; progress always goes to stderr.
// A user's mistake (bad file, bad option) prints one line and exits 1; a bug prints its stack and exits 2.

import { EngineError } from '../engine/errors.ts';
import { GpuError } from '../gpu/errors.ts';
import { FormatError } from '../io/errors.ts';
import { QuantStateError } from '../quant/quantState.ts';
import { ResumeMismatchError } from '../train/trainer.ts';
import { OnnxExportError } from '../export/exportOnnx.ts';
import { BottleneckError } from '../peft/bottleneck.ts';
import { LoraConfigError } from '../peft/loraLinear.ts';
import { TargetSelectionError } from '../peft/targets.ts';
import { evalCommand } from './commands/eval.ts';
import { exportOnnxCommand } from './commands/exportOnnx.ts';
import { generateCommand } from './commands/generate.ts';
import { infoCommand } from './commands/info.ts';
import { logitsCommand } from './commands/logits.ts';
import { mergeCommand } from './commands/merge.ts';
import { quantizeCommand } from './commands/quantize.ts';
import { trainCommand } from './commands/train.ts';
import { UsageError } from './usage.ts';

type Command = (args: string[]) => Promise<{ json: unknown; text: string }>;

const COMMANDS: Record<string, { run: Command; summary: string }> = {
  info: { run: infoCommand, summary: '--model SRC   (SRC: a model folder, a hub id org/name[@revision] or a hub URL; hub: HF_ENDPOINT)' },
  logits: { run: logitsCommand, summary: '--model SRC --tokens 1,2,3 [--adapter DIR] [--quant nf4]' },
  generate: {
    run: generateCommand,
    summary:
      '--model SRC --prompt TEXT [--max-new-tokens 64] [--temperature 0] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--adapter DIR] [--quant nf4]',
  },
  eval: { run: evalCommand, summary: '--model SRC --data FILE(.txt|.jsonl) [--max-length L] [--adapter DIR] [--quant nf4]' },
  quantize: { run: quantizeCommand, summary: '--model DIR --out FILE [--quant-type nf4|fp4] [--blocksize 64] [--double-quant]' },
  train: {
    run: trainCommand,
    summary:
      '--model SRC --data FILE --method lora|qlora|adapter --out DIR [--r 8] [--alpha 16] [--dropout 0] [--rslora] [--targets q_proj,v_proj|all-linear] [--reduction-factor 16] [--placement pfeiffer|houlsby] [--steps 50] [--lr 2e-4] [--batch 4] [--seq 128] [--grad-accum 1] [--warmup 0] [--schedule constant|linear|cosine] [--seed 0] [--eval-every 10] [--save-every 0] [--resume DIR]',
  },
  'export-onnx': { run: exportOnnxCommand, summary: '--model SRC [--adapter DIR] --out FILE   (LoRA merged in; runs in ONNX Runtime Web)' },
  merge: { run: mergeCommand, summary: '--model SRC --adapter DIR --out DIR [--quant nf4]   (LoRA adapters; writes an HF model folder)' },
};

function usage(): string {
  return ['usage: tabtune <command> [options] [--json]', ...Object.entries(COMMANDS).map(([name, c]) => `  ${name} ${c.summary}`)].join('\n');
}

const USER_ERRORS = [
  UsageError,
  FormatError,
  QuantStateError,
  EngineError,
  GpuError,
  RangeError,
  LoraConfigError,
  BottleneckError,
  TargetSelectionError,
  ResumeMismatchError,
  OnnxExportError,
];

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const command = name === undefined ? undefined : COMMANDS[name];
  if (!command) {
    process.stderr.write(`${name ? `tabtune: unknown command '${name}'\n` : ''}${usage()}\n`);
    return name === undefined || name === '--help' ? 0 : 1;
  }
  try {
    const result = await command.run(args);
    process.stdout.write(args.includes('--json') ? `${JSON.stringify(result.json)}\n` : `${result.text}\n`);
    return 0;
  } catch (error) {
    if (USER_ERRORS.some((kind) => error instanceof kind)) {
      // Usage errors name their command already ("train: --steps must …"): said once.
      const message = (error as Error).message.replace(new RegExp(`^${name}: `), '');
      process.stderr.write(`tabtune ${name}: ${message}\n`);
      return 1;
    }
    process.stderr.write(`tabtune ${name}: internal error\n${error instanceof Error ? error.stack : String(error)}\n`);
    return 2;
  }
}

process.exit(await main(process.argv.slice(2)));
