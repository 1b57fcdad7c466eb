"""A small transformer-like model for the ferry.torch tests: 12 blocks in a ModuleList
and 2 in a Sequential, several shapes and dtypes (f32, f16, bf16, f64, i64, i8, bool),
parameters and buffers (persistent and not), a bias shared by two blocks; and Nested, whose
blocks are not top-level children."""

import math

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d, seq, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)
        self.gate = nn.Parameter(torch.rand(d).to(torch.bfloat16))  # bf16 parameter
        self.register_buffer("rel_bias", (torch.randn(seq, seq) * 0.1).half())  # f16
        self.register_buffer("temperature", torch.tensor(1.0 + torch.rand(()).item(),
                                                         dtype=torch.float64))  # 0-dim f64
        self.register_buffer("positions", torch.arange(seq), persistent=False)  # i64
        self.register_buffer("use_mlp", torch.tensor([True, False]))  # bool

    def forward(self, x):
        b, s, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        att = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.heads)
        att = att / self.temperature.float()
        att = att + self.rel_bias.float()[: s, : s]
        causal = self.positions[:s, None] >= self.positions[None, :s]
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, s, d)
        x = x + self.proj(y) * self.gate.float()
        if bool(self.use_mlp[0]):
            x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))
        return x


class TinyTransformer(nn.Module):
    def __init__(self, vocab=256, d=64, seq=16, n_blocks=12, n_refiner=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, seq) for _ in range(n_blocks))
        self.refiner = nn.Sequential(*(Block(d, seq) for _ in range(n_refiner)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("token_scale", torch.randint(-8, 8, (vocab,), dtype=torch.int8))
        # One bias tensor shared by two blocks: it must live where both can see it.
        self.blocks[3].proj.bias = self.blocks[7].fc2.bias

    def forward(self, ids):
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        x = self.refiner(x)
        return self.head(self.norm(x)) * (1 + self.token_scale.float() / 64)


class AdapterBlock(Block):
    """A block with an adapter parameter and a call counter its forward bumps in place."""

    def __init__(self, d, seq):
        super().__init__(d, seq)
        self.adapter = nn.Parameter(torch.zeros(d))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        self.calls.add_(1)
        return super().forward(x) + self.adapter


class WithAdapter(TinyTransformer):
    """TinyTransformer whose block 5 is an AdapterBlock (mutable tensors live there)."""

    def __init__(self, seq=16, d=64, **kw):
        super().__init__(seq=seq, d=d, **kw)
        self.blocks[5] = AdapterBlock(d, seq)


class InnerBlock(Block):
    """A block with a ModuleList of its own (like diffusers' FeedForward.net)."""

    def __init__(self, d, seq):
        super().__init__(d, seq)
        self.extras = nn.ModuleList([nn.Linear(d, d), nn.Linear(d, d)])

    def forward(self, x):
        x = super().forward(x)
        for extra in self.extras:
            x = x + extra(x) * 0.1
        return x


class Body(nn.Module):
    def __init__(self, d, seq, n_blocks):
        super().__init__()
        self.layers = nn.ModuleList(InnerBlock(d, seq) for _ in range(n_blocks))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Nested(nn.Module):
    """Blocks two levels down (net.1.layers), in a Sequential of embedding, body and head,
    beside a small Sequential MLP; each block has a ModuleList inside."""

    def __init__(self, vocab=256, d=64, seq=16, n_blocks=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.net = nn.Sequential(nn.Embedding(vocab, d), Body(d, seq, n_blocks), nn.Linear(d, vocab))

    def forward(self, ids):
        x = self.net[0](ids)
        x = x + self.time_mlp(x)
        return self.net[2](self.net[1](x))


class Stack(nn.Module):
    """Blocks of two float32 Linear layers and a LayerNorm: a model of one float dtype,
    buildable on meta (device="meta")."""

    def __init__(self, d=64, n=6, device=None):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 2 * d, device=device), nn.GELU(),
                          nn.Linear(2 * d, d, device=device), nn.LayerNorm(d, device=device))
            for _ in range(n))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


def model_bytes(model):
    seen = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def inputs(n=3, batch=2, seq=16, vocab=256, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (batch, seq), generator=g) for _ in range(n)]
