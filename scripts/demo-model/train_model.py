#!/usr/bin/env python3
"""Train the demo Llama model on the King James Bible (CPU, one thread).

Reads the tokenizer written by train_tokenizer.py from --out, tokenizes the
corpus, trains a small Llama-architecture model and writes, next to the
tokenizer, `model.safetensors` (F32, Hugging Face Llama tensor names, tied
embeddings), `config.json` (as transformers' LlamaConfig writes it) and
`generation_config.json`.

The model is written here from scratch in PyTorch (torch 1.13 from Debian
works; `transformers` is not needed):
RMSNorm, rotary embeddings in the rotate_half layout, grouped-query attention,
SwiGLU MLP, LM head tied to the input embedding.

`Llama.forward` is the plain reference implementation (row-major activations,
F.linear, explicit causal softmax); sample.py uses it for generation and the
golden logits. `Llama.forward_fast` computes the same function with every
matrix product expressed as a 1-wide convolution, because Debian's torch uses
the reference BLAS (about 2 GFLOP/s on one core) for matmul but oneDNN for
convolutions (15-80 GFLOP/s). Training uses the fast path; the script checks
that both paths agree before training and evaluates the saved model with the
reference path.

Usage:
    /usr/bin/python3 scripts/demo-model/train_model.py --out public/demo
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tokenizer as tt  # noqa: E402

# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # normalizes the last dimension
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, hd = cfg["hidden_size"], cfg["head_dim"]
        self.q_proj = nn.Linear(h, cfg["num_attention_heads"] * hd, bias=False)
        self.k_proj = nn.Linear(h, cfg["num_key_value_heads"] * hd, bias=False)
        self.v_proj = nn.Linear(h, cfg["num_key_value_heads"] * hd, bias=False)
        self.o_proj = nn.Linear(cfg["num_attention_heads"] * hd, h, bias=False)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.mlp = MLP(cfg)


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


def rope_tables(head_dim, length, theta):
    """cos, sin of shape [length, head_dim] (HF rotate_half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x, dim):
    a, b = x.chunk(2, dim=dim)
    return torch.cat([-b, a], dim=dim)


def conv_linear(x, w):
    """y[b, o, t] = sum_i w[o, i] * x[b, i, t], through oneDNN.

    dilation=2 does nothing for a width-1 kernel; it only makes PyTorch pick
    the oneDNN convolution instead of its BLAS-backed 1x1 path.
    """
    return F.conv1d(x, w.unsqueeze(-1), dilation=2)


def rms_channels(x, norm):  # RMSNorm over dim 1 of [B, C, T]
    var = x.pow(2).mean(1, keepdim=True)
    return norm.weight[None, :, None] * (x * torch.rsqrt(var + norm.eps))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self._rope = {}

    def rope(self, length):
        if length not in self._rope:
            self._rope[length] = rope_tables(self.cfg["head_dim"], length, self.cfg["rope_theta"])
        return self._rope[length]

    # ---- reference path: [B, T, C] -----------------------------------------
    def forward(self, ids):
        """ids [B, T] int64 -> logits [B, T, vocab] (float32)."""
        c = self.cfg
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        bsz, t = ids.shape
        cos, sin = self.rope(t)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        x = self.model.embed_tokens.weight[ids]
        for layer in self.model.layers:
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = F.linear(h, a.q_proj.weight).view(bsz, t, nh, hd).transpose(1, 2)
            k = F.linear(h, a.k_proj.weight).view(bsz, t, nkv, hd).transpose(1, 2)
            v = F.linear(h, a.v_proj.weight).view(bsz, t, nkv, hd).transpose(1, 2)
            q = q * cos + rotate_half(q, -1) * sin
            k = k * cos + rotate_half(k, -1) * sin
            rep = nh // nkv  # query head j uses key/value head j // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(mask, float("-inf"))
            p = torch.softmax(s, dim=-1)
            o = torch.matmul(p, v).transpose(1, 2).reshape(bsz, t, nh * hd)
            x = x + F.linear(o, a.o_proj.weight)
            m = layer.mlp
            h = layer.post_attention_layernorm(x)
            x = x + F.linear(F.silu(F.linear(h, m.gate_proj.weight)) * F.linear(h, m.up_proj.weight),
                             m.down_proj.weight)
        x = self.model.norm(x)
        return F.linear(x, self.model.embed_tokens.weight)

    # ---- training path: [B, C, T], convolutions ------------------------------
    def forward_fast(self, ids):
        """ids [B, T] -> logits [B, vocab, T] (note the layout)."""
        c = self.cfg
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        bsz, t = ids.shape
        g = bsz * nh
        cos, sin = self.rope(t)
        cos, sin = cos.t().contiguous(), sin.t().contiguous()  # [hd, T]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1).t()  # [Tk, Tq]: k > q
        x = self.model.embed_tokens.weight[ids].transpose(1, 2).contiguous()  # [B, C, T]
        for layer in self.model.layers:
            a = layer.self_attn
            h = rms_channels(x, layer.input_layernorm)
            q = conv_linear(h, a.q_proj.weight).view(bsz, nh, hd, t)
            k = conv_linear(h, a.k_proj.weight).view(bsz, nkv, hd, t)
            v = conv_linear(h, a.v_proj.weight).view(bsz, nkv, hd, t)
            q = (q * cos + rotate_half(q, 2) * sin) * (1.0 / math.sqrt(hd))
            k = k * cos + rotate_half(k, 2) * sin
            rep = nh // nkv
            k = k.unsqueeze(2).expand(bsz, nkv, rep, hd, t).reshape(bsz, nh, hd, t)
            v = v.unsqueeze(2).expand(bsz, nkv, rep, hd, t).reshape(g * hd, t, 1)
            # scores^T [g, Tk, Tq]: one group per (batch, head), K rows as filters
            kw = k.transpose(2, 3).reshape(g * t, hd, 1)
            s = F.conv1d(q.reshape(1, g * hd, t), kw, groups=g, dilation=2).view(g, t, t)
            s = s.masked_fill(mask, float("-inf"))
            p = torch.softmax(s, dim=1)
            o = F.conv1d(p.reshape(1, g * t, t), v, groups=g, dilation=2).view(bsz, nh * hd, t)
            x = x + conv_linear(o, a.o_proj.weight)
            m = layer.mlp
            h = rms_channels(x, layer.post_attention_layernorm)
            x = x + conv_linear(F.silu(conv_linear(h, m.gate_proj.weight)) * conv_linear(h, m.up_proj.weight),
                                m.down_proj.weight)
        x = rms_channels(x, self.model.norm)
        return conv_linear(x, self.model.embed_tokens.weight)


def init_weights(model, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    std = cfg["initializer_range"]
    for name, p in model.named_parameters():
        if p.dim() == 1:
            nn.init.ones_(p)
        else:
            s = std
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                s = std / math.sqrt(2 * cfg["num_hidden_layers"])
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * s)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def make_config(vocab_size, hidden, layers, heads, kv_heads, intermediate, ctx):
    """config.json in the shape transformers' LlamaConfig saves (sorted keys)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": ctx,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


GENERATION_CONFIG = {
    "bos_token_id": 0,
    "do_sample": True,
    "eos_token_id": 0,
    "max_new_tokens": 128,
    "pad_token_id": 0,
    "repetition_penalty": 1.1,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
}


def save_safetensors(path, tensors, metadata=None):
    """Write {name: float32 tensor} as safetensors (F32, little-endian)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f4"))
        raw = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_model(directory):
    """Load config.json + model.safetensors written by this script."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = Llama(cfg)
    state = load_safetensors(os.path.join(directory, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not match config: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model, cfg


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def encode_docs(tok, docs):
    """Documents packed into one stream, each preceded by <|endoftext|> (id 0)."""
    eos = tok.special[tt.EOS]
    out = []
    for d in docs:
        out.append(eos)
        out.extend(tok.encode(d))
    out.append(eos)
    return torch.tensor(out, dtype=torch.long)


def eval_windows(stream, seq_len):
    """Non-overlapping windows covering the stream: (inputs, targets) pairs."""
    xs, ys = [], []
    for s in range(0, len(stream) - 1, seq_len):
        chunk = stream[s:s + seq_len + 1]
        if len(chunk) < 2:
            break
        xs.append(chunk[:-1])
        ys.append(chunk[1:])
    return xs, ys


@torch.no_grad()
def evaluate(model, stream, seq_len, fast=True, batch=16):
    """Mean next-token cross-entropy (nats) over every token of the stream."""
    xs, ys = eval_windows(stream, seq_len)
    total, count = 0.0, 0
    full = [(x, y) for x, y in zip(xs, ys) if len(x) == seq_len]
    rest = [(x, y) for x, y in zip(xs, ys) if len(x) != seq_len]
    groups = [full[i:i + batch] for i in range(0, len(full), batch)] + [[r] for r in rest]
    for grp in groups:
        x = torch.stack([g[0] for g in grp])
        y = torch.stack([g[1] for g in grp])
        if fast:
            logits = model.forward_fast(x)
            loss = F.cross_entropy(logits, y, reduction="sum")
        else:
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        total += loss.item()
        count += y.numel()
    return total / count


def unigram_baseline(train, val, vocab):
    counts = torch.bincount(train, minlength=vocab).double() + 1.0  # add-one smoothing
    logp = torch.log(counts / counts.sum())
    return -logp[val[1:]].mean().item()


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="public/demo")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps, write nothing")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()

    tok_path = os.path.join(args.out, "tokenizer.json")
    if not os.path.exists(tok_path):
        sys.exit(f"{tok_path} not found: run train_tokenizer.py first")
    tok = tt.ByteLevelBPE(tok_path)
    vocab = len(tok.vocab)
    docs = tt.load_documents()
    train_docs, val_docs = tt.split_documents(docs)
    train = encode_docs(tok, train_docs)
    val = encode_docs(tok, val_docs)
    print(f"train {len(train)} tokens ({len(train_docs)} chapters), "
          f"validation {len(val)} tokens ({len(val_docs)} chapters: "
          f"{val_docs[0].splitlines()[0]} .. {val_docs[-1].splitlines()[0]})", flush=True)
    val_chars = sum(len(d) for d in val_docs)

    cfg = make_config(vocab, args.hidden, args.layers, args.heads, args.kv_heads,
                      args.intermediate, args.ctx)
    model = Llama(cfg)
    init_weights(model, cfg, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config: {json.dumps({k: cfg[k] for k in ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings')})}")
    print(f"parameters: {n_params} ({n_params * 4 / 1e6:.2f} MB as F32)", flush=True)

    # The two forward paths must agree (values and gradients).
    x = train[:2 * 65].view(2, 65)[:, :64]
    ref = model(x)
    fast = model.forward_fast(x).transpose(1, 2)
    diff = (ref - fast).abs().max().item()
    print(f"reference vs fast forward: max |diff| = {diff:.2e}", flush=True)
    assert diff < 1e-4, diff
    gr = torch.autograd.grad(ref.pow(2).mean(), list(model.parameters()))
    gf = torch.autograd.grad(fast.pow(2).mean(), list(model.parameters()))
    gdiff = max(((a - b).abs().max() / (a.abs().max() + 1e-12)).item() for a, b in zip(gr, gf))
    print(f"reference vs fast gradients: max relative diff = {gdiff:.2e}", flush=True)
    assert gdiff < 1e-3, gdiff

    baseline = unigram_baseline(train, val, vocab)
    print(f"unigram baseline on validation: {baseline:.4f} nats/token "
          f"(perplexity {math.exp(baseline):.1f})", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))

    gen = torch.Generator().manual_seed(args.seed)
    n_steps = args.bench or args.steps
    tokens_per_step = args.batch * args.ctx
    print(f"training {n_steps} steps x {args.batch} x {args.ctx} = {n_steps * tokens_per_step} tokens "
          f"({n_steps * tokens_per_step / len(train):.2f} epochs)", flush=True)
    t_train = time.time()
    smooth = None
    history = []
    for step in range(n_steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        starts = torch.randint(0, len(train) - args.ctx - 1, (args.batch,), generator=gen)
        idx = starts[:, None] + torch.arange(args.ctx + 1)[None, :]
        chunk = train[idx]
        logits = model.forward_fast(chunk[:, :-1])
        loss = F.cross_entropy(logits, chunk[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 10 == 0 or step == n_steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d} loss {loss.item():.4f} (avg {smooth:.4f}) lr {lr_at(step):.2e} "
                  f"{(step + 1) * tokens_per_step / el:.0f} tok/s {el:.0f}s", flush=True)
        if not args.bench and ((step + 1) % args.eval_every == 0 or step == n_steps - 1):
            vl = evaluate(model, val, args.ctx)
            history.append((step + 1, round(smooth, 4), round(vl, 4)))
            print(f"== step {step + 1}: validation loss {vl:.4f} (perplexity {math.exp(vl):.1f})", flush=True)
    train_time = time.time() - t_train
    if args.bench:
        print(f"bench: {train_time / n_steps:.2f} s/step")
        return

    os.makedirs(args.out, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items()}
    assert "lm_head.weight" not in state
    save_safetensors(os.path.join(args.out, "model.safetensors"), state, {"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2, sort_keys=True)
        f.write("\n")

    # Re-load what was written and evaluate with the reference path.
    loaded, _ = load_model(args.out)
    vl = evaluate(loaded, val, args.ctx, fast=False)
    val_tokens = len(val) - 1
    print(f"saved model, reference path: validation loss {vl:.4f} nats/token, "
          f"perplexity {math.exp(vl):.2f}, {vl * val_tokens / val_chars / math.log(2):.3f} bits/char "
          f"(unigram baseline {baseline:.4f}, perplexity {math.exp(baseline):.1f})")
    print(f"history (step, smoothed train loss, validation loss): {history}")
    print(f"training time {train_time:.0f}s, total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
