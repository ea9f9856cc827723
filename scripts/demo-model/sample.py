#!/usr/bin/env python3
"""Generate text from the demo model and write its golden reference.

Uses the reference forward pass of train_model.py (plain PyTorch, the whole
sequence recomputed at every step, no KV cache) and the reference tokenizer
encoder of train_tokenizer.py (checked to give the same ids as
@huggingface/tokenizers on the whole corpus).

    # samples for the README (greedy, then sampled)
    /usr/bin/python3 scripts/demo-model/sample.py --model public/demo
    # golden logits + greedy continuations for the TypeScript loader tests
    /usr/bin/python3 scripts/demo-model/sample.py --model public/demo \
        --golden tests/fixtures/demo/golden.json
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_model as tm  # noqa: E402
import train_tokenizer as tt  # noqa: E402

GOLDEN_PROMPTS = ["In the beginning God created", "For God so loved the world,"]
GOLDEN_NEW_TOKENS = 32

README_PROMPTS = [
    "In the beginning God created",
    "And Jesus said unto them,",
    "The LORD is my shepherd;",
    "Psalms 151\n",
    "Blessed are the",
]


@torch.no_grad()
def next_logits(model, ids):
    ctx = model.cfg["max_position_embeddings"]
    x = torch.tensor([ids[-ctx:]], dtype=torch.long)
    return model(x)[0, -1]


@torch.no_grad()
def generate(model, ids, max_new, eos, temperature=0.0, top_k=0, gen=None):
    """Returns (new token ids, top-1 minus top-2 logit at each step)."""
    ids = list(ids)
    out = []
    margins = []
    for _ in range(max_new):
        logits = next_logits(model, ids)
        top2 = torch.topk(logits, 2).values
        margins.append((top2[0] - top2[1]).item())
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            z = logits / temperature
            if top_k:
                kth = torch.topk(z, top_k).values[-1]
                z = z.masked_fill(z < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(z, -1), 1, generator=gen))
        ids.append(nxt)
        out.append(nxt)
        if nxt == eos:
            break
    return out, margins


def f32(x):
    """Shortest decimal that reads back as the same float32."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="public/demo")
    ap.add_argument("--golden", help="write the golden reference JSON here")
    ap.add_argument("--prompt", action="append", help="prompt (repeatable); default: README prompts")
    ap.add_argument("--max-new-tokens", type=int, default=60)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, cfg = tm.load_model(args.model)
    tok = tt.ByteLevelBPE(os.path.join(args.model, "tokenizer.json"))
    eos = cfg["eos_token_id"]

    if args.golden:
        cases = []
        for prompt in GOLDEN_PROMPTS:
            ids = tok.encode(prompt)
            logits = next_logits(model, ids)
            new, margins = generate(model, ids, GOLDEN_NEW_TOKENS, eos)
            cases.append({
                "prompt": prompt,
                "input_ids": ids,
                "last_logits": [f32(v) for v in logits.tolist()],
                "greedy_new_tokens": new,
                "greedy_text": tok.decode(new),
                # how far the chosen token's logit is above the runner-up, per step:
                # a reimplementation's greedy tokens can only differ where this is tiny
                "greedy_top2_margins": [round(m, 4) for m in margins],
            })
            print(f"{prompt!r} -> {tok.decode(new)!r} (smallest top-2 margin {min(margins):.4f})")
        golden = {
            "description": "Demo model reference from scripts/demo-model/sample.py (PyTorch, float32): "
                           "logits of the last prompt position and the greedy continuation "
                           f"(up to {GOLDEN_NEW_TOKENS} new tokens, stopping after eos) for fixed prompts. "
                           "Prompts are encoded without special tokens.",
            "model_dir": args.model,
            "sha256": {name: sha256(os.path.join(args.model, name))
                       for name in ("model.safetensors", "config.json", "tokenizer.json")},
            "vocab_size": cfg["vocab_size"],
            "eos_token_id": eos,
            "cases": cases,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.golden)), exist_ok=True)
        with open(args.golden, "w") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        print(f"wrote {args.golden}")
        return

    gen = torch.Generator().manual_seed(args.seed)
    for prompt in args.prompt or README_PROMPTS:
        ids = tok.encode(prompt)
        greedy, _ = generate(model, ids, args.max_new_tokens, eos)
        sampled, _ = generate(model, ids, args.max_new_tokens, eos, args.temperature, args.top_k, gen)
        print(f"### prompt: {prompt!r}")
        print(f"[greedy] {prompt}{tok.decode(greedy, skip_special=False)}")
        print(f"[temperature {args.temperature}, top-k {args.top_k}, seed {args.seed}] "
              f"{prompt}{tok.decode(sampled, skip_special=False)}")
        print()


if __name__ == "__main__":
    main()
