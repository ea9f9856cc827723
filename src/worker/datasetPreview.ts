// The first examples of a tokenized dataset as the model sees them, for the data panel: one entry per token with
// the text it adds, whether its label is kept (a target: the model is trained to produce it) or ignored (masked:
// prompt tokens, non-assistant turns, the first token), and whether it is a special token.
//
// Token texts are decoded in context, not one id at a time: a token alone can decode differently than inside its
// sequence (SentencePiece decoders strip the leading space of the first token; a byte-level token may hold only
// part of a UTF-8 character). So the text of token i is decode(ids[s..i+1]) minus decode(ids[s..i]) over a short
// window starting CONTEXT tokens back, which costs O(tokens × CONTEXT). A token whose bytes end mid-character adds
// '' and the token that completes the character carries it; the last shown token carries whatever is left (a
// character cut by the cap or the context shows as U+FFFD).

import type { TokenizedDataset } from '../train/data.ts';
import type { DatasetPreviewExample, DatasetPreviewToken } from './protocol.ts';

/** What the preview needs of a tokenizer (io/tokenizer.ts's Tokenizer fits). */
export interface PreviewTokenizer {
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  isSpecialId(id: number): boolean;
}

export interface PreviewOptions {
  /** Examples shown; default 3. */
  examples?: number;
  /** Tokens shown per example; default 200. */
  tokensPerExample?: number;
}

export const PREVIEW_EXAMPLES = 3;
export const PREVIEW_TOKENS_PER_EXAMPLE = 200;
/** Tokens of left context each decode starts from (enough for a 4-byte character split into single bytes). */
const CONTEXT = 4;
const REPLACEMENT = '\uFFFD';

/** The first examples of `dataset`, each capped, token by token. */
export function previewDataset(dataset: TokenizedDataset, tokenizer: PreviewTokenizer, options: PreviewOptions = {}): DatasetPreviewExample[] {
  const count = options.examples ?? PREVIEW_EXAMPLES;
  const cap = options.tokensPerExample ?? PREVIEW_TOKENS_PER_EXAMPLE;
  return dataset.examples.slice(0, count).map((example) => {
    const shown = Array.from(example.ids.subarray(0, cap));
    const texts = tokenTexts(shown, tokenizer);
    let trainedTokens = 0;
    for (const target of example.targets) trainedTokens += target;
    const tokens = shown.map(
      (id, i): DatasetPreviewToken => ({ id, text: texts[i], trained: example.targets[i] === 1, special: tokenizer.isSpecialId(id) }),
    );
    return { line: example.line, tokens, totalTokens: example.ids.length, trainedTokens };
  });
}

/** The text each token adds to the decoded sequence (see the file header). */
export function tokenTexts(ids: readonly number[], tokenizer: PreviewTokenizer): string[] {
  const texts: string[] = [];
  let pending = 0; // the first token whose text is not attributed yet
  for (let i = 0; i < ids.length; i++) {
    const start = Math.max(0, pending - CONTEXT);
    const after = tokenizer.decode(ids.slice(start, i + 1));
    if (after.endsWith(REPLACEMENT) && i < ids.length - 1) {
      texts.push(''); // a character's first bytes: the next tokens complete it
      continue;
    }
    const before = tokenizer.decode(ids.slice(start, pending));
    // A decoder whose output for a longer sequence does not extend the shorter one: fall back to the group alone.
    texts.push(after.startsWith(before) ? after.slice(before.length) : tokenizer.decode(ids.slice(pending, i + 1)));
    pending = i + 1;
  }
  return texts;
}
