"""The peer for `npm run bench -- --only train` on a lent GPU: the same training step in eager PyTorch on CUDA.

SmolLM2-135M shapes (hidden 576, 30 layers, 9 heads / 3 KV heads, MLP 1536, vocabulary 49152, tied head) with
random weights, batch 1 x 512 tokens, the base frozen, AdamW on the adapter only:
  lora     rank 8, alpha 16 on q_proj and v_proj (PEFT's and tabtune's Llama default)
  adapter  Pfeiffer bottleneck after each MLP, reduction factor 16, ReLU
Attention is torch's fused scaled_dot_product_attention (causal). f32 with TF32 off, the arithmetic WGSL has;
with TF32 on as a second reading. Prints one JSON object: ms per step and peak CUDA bytes per method.
"""

import json
import math
import sys
import time

import torch
import torch.nn.functional as F

CFG = dict(vocab=49152, hidden=576, inter=1536, layers=30, heads=9, kv_heads=3, theta=100000.0, eps=1e-5)
TOKENS = 512
WARMUP, MEASURED = 3, 10


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def causal_attention(q, k, v):
    """torch's fused kernel where it exists (2.0+); the plain masked softmax otherwise."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Model(torch.nn.Module):
    def __init__(self, method):
        super().__init__()
        c = CFG
        d, hd = c["hidden"], c["hidden"] // c["heads"]
        self.hd = hd
        p = lambda *shape: torch.nn.Parameter(torch.empty(*shape).uniform_(-0.035, 0.035), requires_grad=False)
        self.embed = p(c["vocab"], d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            layer = torch.nn.Module()
            layer.q, layer.k, layer.v, layer.o = p(c["heads"] * hd, d), p(c["kv_heads"] * hd, d), p(c["kv_heads"] * hd, d), p(d, c["heads"] * hd)
            layer.gate, layer.up, layer.down = p(c["inter"], d), p(c["inter"], d), p(d, c["inter"])
            layer.n1 = torch.nn.Parameter(torch.ones(d), requires_grad=False)
            layer.n2 = torch.nn.Parameter(torch.ones(d), requires_grad=False)
            if method == "lora":
                r = 8
                layer.qa = torch.nn.Parameter(torch.empty(r, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
                layer.qb = torch.nn.Parameter(torch.zeros(c["heads"] * hd, r))
                layer.va = torch.nn.Parameter(torch.empty(r, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
                layer.vb = torch.nn.Parameter(torch.zeros(c["kv_heads"] * hd, r))
            else:
                b = d // 16
                layer.ad = torch.nn.Parameter(torch.empty(b, d).uniform_(-0.01, 0.01))
                layer.ad_b = torch.nn.Parameter(torch.zeros(b))
                layer.au = torch.nn.Parameter(torch.zeros(d, b))
                layer.au_b = torch.nn.Parameter(torch.zeros(d))
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(d), requires_grad=False)
        self.method = method
        inv = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2).float() / hd))
        angles = torch.outer(torch.arange(TOKENS).float(), inv)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def forward(self, ids):
        c, hd = CFG, self.hd
        x = self.embed[ids]
        T = ids.shape[1]
        for L in self.layers:
            h = rms_norm(x, L.n1, c["eps"])
            q, k, v = h @ L.q.T, h @ L.k.T, h @ L.v.T
            if self.method == "lora":
                q = q + (h @ L.qa.T) @ L.qb.T * 2.0
                v = v + (h @ L.va.T) @ L.vb.T * 2.0
            q = q.view(1, T, c["heads"], hd).transpose(1, 2)
            k = k.view(1, T, c["kv_heads"], hd).transpose(1, 2)
            v = v.view(1, T, c["kv_heads"], hd).transpose(1, 2)
            q, k = rope(q, self.cos[:T], self.sin[:T]), rope(k, self.cos[:T], self.sin[:T])
            rep = c["heads"] // c["kv_heads"]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            a = causal_attention(q, k, v)
            x = x + a.transpose(1, 2).reshape(1, T, -1) @ L.o.T
            h = rms_norm(x, L.n2, c["eps"])
            m = (F.silu(h @ L.gate.T) * (h @ L.up.T)) @ L.down.T
            if self.method == "adapter":
                m = m + F.relu(m @ L.ad.T + L.ad_b) @ L.au.T + L.au_b
            x = x + m
        return rms_norm(x, self.norm, c["eps"]) @ self.embed.T


def bench(method, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    model = Model(method).cuda()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, CFG["vocab"], (1, TOKENS + 1), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.view(-1, CFG["vocab"]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(MEASURED):
        step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - started) * 1000 / MEASURED
    peak = torch.cuda.max_memory_allocated()
    del model, opt
    torch.cuda.empty_cache()
    return dict(method=method, tf32=tf32, msPerStep=ms, tokensPerSecond=TOKENS / (ms / 1000), peakBytes=peak, trainable=sum(p.numel() for p in params))


if __name__ == "__main__":
    rows = [bench(m, tf32) for tf32 in (False, True) for m in ("lora", "adapter")]
    json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(0), tokens=TOKENS, rows=rows), sys.stdout)
    print()
