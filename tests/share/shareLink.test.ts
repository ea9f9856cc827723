// Share links: round trips, and every hostile link from QUALITY.md ("Share links") refused with a typed error
// that names the field at fault.

import { describe, expect, it } from 'vitest';
import {
  decodeShareConfig,
  deflateRaw,
  encodeRawPayload,
  encodeShareConfig,
  MAX_LINK_CHARS,
  MAX_PAYLOAD_BYTES,
  SHARE_PREFIX,
  ShareLinkError,
  type ShareConfig,
} from '../../src/share/shareLink.ts';

const LORA: ShareConfig = {
  v: 1,
  model: { kind: 'hub', id: 'org/tiny-model@main', endpoint: 'https://mirror.example.org/hub' },
  method: { kind: 'qlora', r: 4, alpha: 8, dropout: 0.05, useRslora: true, targetModules: ['q_proj', 'v_proj'] },
  train: { steps: 30, seqLength: 64, lr: 2e-4 },
  data: { inline: 'In the beginning\n\nAnd the earth was without form 🌍' },
};

const ADAPTER: ShareConfig = {
  v: 1,
  model: { kind: 'demo' },
  method: { kind: 'adapter', reductionFactor: 8, dropout: 0, placement: 'houlsby' },
  train: { steps: 5, seqLength: 16, lr: 1e-3 },
  data: { url: 'https://example.org/data/train.jsonl' },
};

function base(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(ADAPTER)) as Record<string, unknown>;
}

async function refusal(link: string): Promise<ShareLinkError> {
  try {
    await decodeShareConfig(link);
  } catch (error) {
    expect(error).toBeInstanceOf(ShareLinkError);
    return error as ShareLinkError;
  }
  throw new Error(`link was accepted: ${link.slice(0, 80)}`);
}

async function refusalOf(value: unknown): Promise<ShareLinkError> {
  return refusal(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(value))));
}

describe('round trip', () => {
  it('decodes what it encodes, for each model and method kind', async () => {
    for (const config of [LORA, ADAPTER, { ...ADAPTER, data: undefined }, { ...LORA, model: { kind: 'hub' as const, id: 'gpt2' } }]) {
      const { data, ...rest } = config;
      const clean: ShareConfig = data === undefined ? rest : config;
      const link = await encodeShareConfig(clean);
      expect(link.startsWith('#share=')).toBe(true);
      expect(link.slice(7)).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(await decodeShareConfig(link)).toEqual(clean);
      expect(await decodeShareConfig(link.slice(1))).toEqual(clean); // "share=..." without the '#'
    }
  });

  it('compresses a repetitive inline dataset well below its size', async () => {
    const inline = 'And God said, Let there be light: and there was light.\n\n'.repeat(1000);
    const link = await encodeShareConfig({ ...ADAPTER, data: { inline } });
    expect(link.length).toBeLessThan(inline.length / 20);
    expect((await decodeShareConfig(link)).data).toEqual({ inline });
  });

  it('refuses to encode a link over the link cap', async () => {
    let seed = 1;
    const noise = Array.from({ length: 40_000 }, () => String.fromCharCode(33 + (((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 24) % 90))).join('');
    await expect(encodeShareConfig({ ...ADAPTER, data: { inline: noise } })).rejects.toMatchObject({ name: 'ShareLinkError', field: 'link' });
  });
});

/** The JSON text a link carries (inflated), to compare what two encoders put in a link. */
async function payloadOf(link: string): Promise<string> {
  const base64 = link.slice(SHARE_PREFIX.length).replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'))).text();
}

describe('schedule, warm-up and seed', () => {
  it('round-trip when set; absent, a link reads as before', async () => {
    const cosine: ShareConfig = { ...LORA, train: { ...LORA.train, schedule: 'cosine', warmupSteps: 2, seed: 7 } };
    expect(await decodeShareConfig(await encodeShareConfig(cosine))).toEqual(cosine);
    const linear: ShareConfig = { ...ADAPTER, train: { ...ADAPTER.train, schedule: 'linear' } };
    expect(await decodeShareConfig(await encodeShareConfig(linear))).toEqual(linear);
    const seedOnly: ShareConfig = { ...ADAPTER, train: { ...ADAPTER.train, seed: 2 ** 32 - 1 } };
    expect(await decodeShareConfig(await encodeShareConfig(seedOnly))).toEqual(seedOnly);
    const plain = (await decodeShareConfig(await encodeShareConfig(LORA))).train;
    expect(Object.keys(plain)).toEqual(['steps', 'seqLength', 'lr']);
  });

  it('still reads a link made before they existed, and the same configuration encodes to the same payload', async () => {
    // Made by the encoder of commit d3bd0c0 (batch size 2, no schedule, warm-up or seed keys).
    const old =
      '#share=TYxLTsQwDIavMvrXFmqLhJBvgAQbOIFnYpoI1ymJy2JGuTsaVqy_xw0_4Jmw1aQGvuGreAIj6VYxCJtGrukfsNoEhAZ-JojtWcDzEyG1utcjwBPh6Pre_0T-FOtKCGmrxltNh2kH-2E2CNGk-P3dQ_cOnhdC1-9X9TUy-HEhWANPD9M0E84Sl_xRrgpeBiFJyL0tbsUVjBc_RdbTWdfiXnzFGL8';
    const decoded = await decodeShareConfig(old);
    expect(decoded).toEqual({
      v: 1,
      model: { kind: 'demo' },
      method: { kind: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null },
      train: { steps: 12, seqLength: 32, lr: 0.001, batchSize: 2 },
      data: { inline: 'In the beginning' },
    });
    expect(await payloadOf(await encodeShareConfig(decoded))).toBe(await payloadOf(old));
  });

  it('refuses a bad schedule, warm-up or seed, naming the field', async () => {
    const train = (patch: Record<string, unknown>) => ({ ...base(), train: { steps: 5, seqLength: 16, lr: 1e-3, ...patch } });
    for (const schedule of ['step', 'Cosine', '', 0, null, '__proto__']) {
      const error = await refusalOf(train({ schedule }));
      expect(error.field).toBe('train.schedule');
      expect(error.message).toBe('Share link: train.schedule: must be one of constant, linear, cosine');
    }
    expect((await refusalOf(train({ warmupSteps: -1 }))).field).toBe('train.warmupSteps');
    expect((await refusalOf(train({ warmupSteps: 1.5 }))).field).toBe('train.warmupSteps');
    expect((await refusalOf(train({ warmupSteps: '2' }))).field).toBe('train.warmupSteps');
    const tooLong = await refusalOf(train({ warmupSteps: 5 }));
    expect(tooLong.field).toBe('train.warmupSteps');
    expect(tooLong.message).toBe('Share link: train.warmupSteps: must be fewer than the 5 steps');
    expect(await decodeShareConfig(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(train({ warmupSteps: 4 })))))).toMatchObject({ train: { warmupSteps: 4 } });
    expect((await refusalOf(train({ seed: -1 }))).field).toBe('train.seed');
    expect((await refusalOf(train({ seed: 2 ** 32 }))).field).toBe('train.seed');
    expect((await refusalOf(train({ seed: 0.5 }))).field).toBe('train.seed');
    expect((await refusalOf(train({ seed: '7' }))).field).toBe('train.seed');
    await expect(encodeShareConfig({ ...ADAPTER, train: { ...ADAPTER.train, warmupSteps: 9 } })).rejects.toMatchObject({ name: 'ShareLinkError', field: 'train.warmupSteps' });
  });
});

describe('demo links', () => {
  it('round-trips a batch size; a link without one (made before it existed) means 1', async () => {
    const config: ShareConfig = { ...LORA, train: { ...LORA.train, batchSize: 8 } };
    expect(await decodeShareConfig(await encodeShareConfig(config))).toEqual(config);
    expect(Object.hasOwn((await decodeShareConfig(await encodeShareConfig(LORA))).train, 'batchSize')).toBe(false);
  });

  it('round-trips the demo field, true and false', async () => {
    for (const demo of [true, false]) {
      const config: ShareConfig = { ...LORA, demo };
      const decoded = await decodeShareConfig(await encodeShareConfig(config));
      expect(decoded).toEqual(config);
      expect(decoded.demo).toBe(demo);
    }
  });

  it('still reads a link made before demo links existed (same version, no demo key) as a plain link', async () => {
    // Made by the encoder of commit 8f0de1b, before the field was added.
    const old =
      '#share=TcxBCsIwEEbhq8i_HqRFEZkbCLrxBpGMbXA6qcnUTcndpa5cv4-34gPuCVOOouAVr2QRjChTRiNM4mOOf0FzCSAU8JEQdB4D-EyIJc95cXBHWKrc68_xM2gVgocyiN9yXFQq2BbVRvASkm3r6jJX8IFQ5X0VG3wE9yeCFnC377q-EWLwsOFkmkzAuNjOR9k9ZEhmyQa09gU';
    const decoded = await decodeShareConfig(old);
    expect(decoded).toEqual({
      v: 1,
      model: { kind: 'demo' },
      method: { kind: 'lora', r: 4, alpha: 8, dropout: 0, useRslora: false, targetModules: null },
      train: { steps: 3, seqLength: 16, lr: 0.001 },
      data: { inline: 'In the beginning' },
    });
    expect(Object.hasOwn(decoded, 'demo')).toBe(false);
    expect(await decodeShareConfig(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(base()))))).toEqual(ADAPTER);
  });

  it('refuses a demo value that is not true or false, naming the field', async () => {
    for (const demo of ['yes', 1, null, 'true', {}]) {
      const error = await refusalOf({ ...base(), demo });
      expect(error.field).toBe('demo');
      expect(error.message).toBe('Share link: demo: must be true or false');
    }
  });

  it('refuses a demo link without data to train on, when decoding and when encoding', async () => {
    const { data: _data, ...noData } = base();
    expect((await refusalOf({ ...noData, demo: true })).field).toBe('demo');
    await expect(encodeShareConfig({ ...ADAPTER, data: undefined, demo: true })).rejects.toMatchObject({ name: 'ShareLinkError', field: 'demo' });
    // A plain link without data stays fine.
    expect(await decodeShareConfig(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify({ ...noData, demo: false }))))).toMatchObject({ demo: false });
  });
});

describe('hostile links', () => {
  it('unknown version', async () => {
    for (const v of [2, 0, '1', null]) expect((await refusalOf({ ...base(), v })).field).toBe('v');
  });

  it('unknown keys, at the top and inside', async () => {
    expect((await refusalOf({ ...base(), script: 'alert(1)' })).field).toBe('script');
    expect((await refusalOf({ ...base(), train: { steps: 5, seqLength: 16, lr: 1e-3, optimizer: 'sgd' } })).field).toBe('train.optimizer');
    expect((await refusalOf({ ...base(), model: { kind: 'demo', id: 'x/y' } })).field).toBe('model.id');
    const proto = SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(base()).replace('{', '{"__proto__":{"polluted":1},')));
    expect((await refusal(proto)).field).toBe('__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('enum values outside the list', async () => {
    for (const kind of ['constructor', '__proto__', 'toString', 'LORA', '']) {
      expect((await refusalOf({ ...base(), method: { kind, reductionFactor: 8, dropout: 0, placement: 'houlsby' } })).field).toBe('method.kind');
      expect((await refusalOf({ ...base(), model: { kind } })).field).toBe('model.kind');
    }
    expect((await refusalOf({ ...base(), method: { kind: 'adapter', reductionFactor: 8, dropout: 0, placement: 'constructor' } })).field).toBe('method.placement');
  });

  it('NaN, Infinity, negative and absurd numbers', async () => {
    // JSON has no NaN/Infinity literals; they arrive as text that is not JSON or as strings.
    expect((await refusal(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(base()).replace('"steps":5', '"steps":NaN'))))).field).toBe('payload');
    const train = (patch: Record<string, unknown>) => ({ ...base(), train: { steps: 5, seqLength: 16, lr: 1e-3, ...patch } });
    expect((await refusalOf(train({ steps: 'NaN' }))).field).toBe('train.steps');
    expect((await refusalOf(train({ lr: 1e999 }))).field).toBe('train.lr'); // JSON.parse gives Infinity
    expect((await refusalOf(train({ lr: -1e-3 }))).field).toBe('train.lr');
    expect((await refusalOf(train({ lr: 0 }))).field).toBe('train.lr');
    expect((await refusalOf(train({ lr: 5 }))).field).toBe('train.lr');
    expect((await refusalOf(train({ steps: -3 }))).field).toBe('train.steps');
    expect((await refusalOf(train({ steps: 1e12 }))).field).toBe('train.steps');
    expect((await refusalOf(train({ steps: 2.5 }))).field).toBe('train.steps');
    expect((await refusalOf(train({ seqLength: 1e6 }))).field).toBe('train.seqLength');
    expect((await refusalOf(train({ batchSize: 0 }))).field).toBe('train.batchSize');
    expect((await refusalOf(train({ batchSize: 65 }))).field).toBe('train.batchSize');
    expect((await refusalOf(train({ batchSize: 1.5 }))).field).toBe('train.batchSize');
    const lora = (patch: Record<string, unknown>) => ({ ...base(), method: { kind: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null, ...patch } });
    expect(await decodeShareConfig(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(lora({})))))).toMatchObject({ method: { kind: 'lora', r: 8 } });
    expect((await refusalOf(lora({ r: 0 }))).field).toBe('method.r');
    expect((await refusalOf(lora({ r: 1e9 }))).field).toBe('method.r');
    expect((await refusalOf(lora({ alpha: 0 }))).field).toBe('method.alpha');
    expect((await refusalOf(lora({ dropout: 1.5 }))).field).toBe('method.dropout');
    expect((await refusalOf(lora({ useRslora: 'yes' }))).field).toBe('method.useRslora');
    expect((await refusalOf(lora({ targetModules: ['q_proj', 'a;b'] }))).field).toBe('method.targetModules[1]');
    expect((await refusalOf({ ...base(), method: { kind: 'adapter', reductionFactor: -8, dropout: 0, placement: 'houlsby' } })).field).toBe('method.reductionFactor');
  });

  it('model ids with "..", "@" tricks, other hosts or javascript:', async () => {
    const hub = (model: Record<string, unknown>) => ({ ...base(), model: { kind: 'hub', ...model } });
    for (const id of ['../etc/passwd', 'org/../x', 'org/na..me', 'org/name@a@b', 'org/name@../x', 'org/name/extra', '', 'org/name\n']) {
      expect((await refusalOf(hub({ id }))).field, id).toBe('model.id');
    }
    for (const id of ['https://evil.example/org/name', 'https://huggingface.co@evil.example/org/name', '//evil.example/org/name', 'javascript:alert(1)', 'JavaScript:alert(1)', 'data:text/html,x']) {
      expect((await refusalOf(hub({ id }))).field, id).toBe('model.id');
    }
    for (const endpoint of ['javascript:alert(1)', 'file:///etc', 'https://user:pw@evil.example', 'https://hub.example/?x=1', '']) {
      expect((await refusalOf(hub({ id: 'org/name', endpoint }))).field, endpoint).toBe('model.endpoint');
    }
    expect(await decodeShareConfig(SHARE_PREFIX + (await encodeRawPayload(JSON.stringify(hub({ id: 'org/name@v1.0' })))))).toMatchObject({ model: { id: 'org/name@v1.0' } });
  });

  it('dataset URLs other than http(s)', async () => {
    for (const url of ['data:text/plain,hello', 'blob:https://example.org/1234', 'file:///etc/passwd', 'javascript:alert(1)', 'ftp://example.org/x', 'not a url', 'https://u:p@example.org/x']) {
      expect((await refusalOf({ ...base(), data: { url } })).field, url).toBe('data.url');
    }
    expect((await refusalOf({ ...base(), data: { url: 'https://example.org/x', inline: 'x' } })).field).toBe('data');
    expect((await refusalOf({ ...base(), data: { inline: 42 } })).field).toBe('data.inline');
  });

  it('a link over the size cap', async () => {
    const link = SHARE_PREFIX + 'A'.repeat(MAX_LINK_CHARS + 4);
    expect((await refusal(link)).field).toBe('link');
  });

  it('a decompression bomb is stopped at the payload cap', async () => {
    // 64 MiB of spaces compresses to ~64 KB; a smaller bomb that fits in the link: 16 MiB → ~16 KB of base64url.
    const bomb = new Uint8Array(16 * 1024 * 1024).fill(0x20);
    const compressed = await deflateRaw(bomb);
    let binary = '';
    for (const byte of compressed) binary += String.fromCharCode(byte);
    const encoded = btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    expect(encoded.length).toBeLessThanOrEqual(MAX_LINK_CHARS);
    const started = performance.now();
    const error = await refusal(SHARE_PREFIX + encoded);
    expect(error.field).toBe('payload');
    expect(error.message).toContain(String(MAX_PAYLOAD_BYTES));
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('truncated or double-encoded links', async () => {
    const link = await encodeShareConfig(ADAPTER);
    const payload = link.slice(SHARE_PREFIX.length);
    for (const cut of [1, 5, Math.floor(payload.length / 2)]) {
      const error = await refusal(SHARE_PREFIX + payload.slice(0, payload.length - cut));
      expect(['link', 'payload']).toContain(error.field);
    }
    expect((await refusal(encodeURIComponent(link))).field).toBe('link'); // %23share%3D...
    expect((await refusal(SHARE_PREFIX + encodeURIComponent(payload + '=='))).field).toBe('link');
    // The whole link base64url-encoded once more decodes to bytes that are not deflate data.
    const twice = btoa(payload).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    expect(['link', 'payload']).toContain((await refusal(SHARE_PREFIX + twice)).field);
    expect((await refusal(SHARE_PREFIX)).field).toBe('link');
    expect((await refusalOf([1, 2, 3])).field).toBe('');
    expect((await refusalOf('{"v":1}')).field).toBe('');
  });
});
