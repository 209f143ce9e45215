"""PyTorch reference for Stratum's trainer benchmarks (CPU, and CUDA with --device cuda).

The same model as Sources/TrainerCore/model.c: byte vocabulary (256), learned positions,
pre-LayerNorm blocks, tanh-GELU MLP (4x), output projection tied to the token embedding,
AdamW with decay on matrices and embeddings. Trains on the same synthetic Markov source
(uniformly random successors here; the data does not change the speed).

usage: python torch_gpt.py --layers 4 --width 256 --heads 4 --context 256 --batch 8 --threads 2 --steps 20
       python torch_gpt.py --device cuda --precision bf16 --compile --layers 12 --width 768 --heads 12 --context 1024
Prints one line: "torch tokens/s <n> ms/step <m> loss <l> ...".

On CUDA, --precision picks the matmul arithmetic: fp32 (exact float32), tf32 (float32 weights,
TF32 tensor-core matmuls: what stratum-trainer-cuda does) or bf16 (autocast, float32 master
weights: what PyTorch users usually run). --compile uses torch.compile and falls back to eager
(saying so) when compilation fails.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fcproj = nn.Linear(4 * width, width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        x = x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, layers, width, heads, context):
        super().__init__()
        self.wte = nn.Embedding(256, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.lnf = nn.LayerNorm(width)
        # model.c's initialisation (tc_param_init): normal 0.02 for the matrices and the token
        # embedding, 0.01 for positions, 0.02 / sqrt(2 layers) for the residual projections,
        # zero biases, unit LayerNorm gains.
        res = 0.02 / math.sqrt(2 * layers)
        for name, p in self.named_parameters():
            if name.startswith("wpe"):
                nn.init.normal_(p, std=0.01)
            elif p.dim() >= 2:
                nn.init.normal_(p, std=res if name.endswith(("proj.weight", "fcproj.weight")) else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, 256), targets.reshape(-1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    a.warmup = max(a.warmup, 1)  # step 0 runs before the clock starts (it compiles, when compiling)
    cuda = a.device == "cuda"
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    model = GPT(a.layers, a.width, a.heads, a.context).to(a.device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if cuda else {}))
    forward = model
    compiled = "no"
    if a.compile:
        forward, compiled = torch.compile(model), "yes"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and a.precision == "bf16")
    g = torch.Generator().manual_seed(7)
    succ = torch.randint(0, 256, (256, 4), generator=g)

    def batch():
        x = torch.empty(a.batch, a.context + 1, dtype=torch.long)
        x[:, 0] = torch.randint(0, 256, (a.batch,), generator=g)
        choice = torch.randint(0, 4, (a.batch, a.context), generator=g)
        for t in range(a.context):
            x[:, t + 1] = succ[x[:, t], choice[:, t]]
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()

    batches = [tuple(t.to(a.device) for t in batch()) for _ in range(4)]

    def step(s):
        x, y = batches[s % len(batches)]
        with autocast:
            loss = forward(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    loss = None
    try:
        loss = step(0)
    except Exception as e:  # torch.compile is not available everywhere (no Triton, old GPU)
        if not a.compile:
            raise
        print(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); eager instead",
              file=sys.stderr)
        forward, compiled = model, "failed"
        loss = step(0)
    for s in range(1, a.warmup + a.steps):
        if s == a.warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = step(s)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - start
    tps = a.steps * a.batch * a.context / dt
    print(f"torch tokens/s {tps:.0f} ms/step {1000 * dt / a.steps:.1f} loss {loss.item():.4f} "
          f"threads {torch.get_num_threads()} device {a.device} precision {a.precision} compiled {compiled}")


if __name__ == "__main__":
    main()
