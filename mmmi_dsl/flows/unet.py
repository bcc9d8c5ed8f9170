"""A small convolutional velocity network ``v(x, t, c)`` for image-shaped modalities (C x H x W).

A UNet: a 3x3 stem, then per resolution level ``res_blocks`` residual blocks (GroupNorm, SiLU,
3x3 convolutions) and a stride-2 downsampling (not after the last level), a middle of two
residual blocks around optional self-attention at the lowest resolution, and an upward path
whose blocks each take the matching skip connection (concatenated channels), with nearest x2
upsampling. Time features ``[t, sin(pi k t), cos(pi k t)]`` (k = 1..t_freqs, smooth in t so
fixed-step solvers resolve them) go through a two-layer MLP; the class embedding (``n_classes
+ 1`` entries, the last the null class of classifier-free guidance) is added to it, and each
residual block adds a linear map of that sum to its features.

The tensor shapes are enumerated without torch by
:func:`mmmi_dsl.builtins.weights.unet_shapes` (a test keeps the two equal).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))) + emb))))`` with a 1x1 skip when channels change."""

    def __init__(self, c_in: int, c_out: int, t_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (stable deep training)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class Level(nn.Module):
    """One resolution of the UNet: its residual blocks, then a resampling conv (or none)."""

    def __init__(self, blocks: list[ResBlock], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    """``v(x, t, c)`` on flattened images: x (n, C*H*W), t scalar or (n,), c (n,) -> (n, C*H*W).

    Args:
        shape: (C, H, W); H and W divisible by ``2 ** (len(mults) - 1)``.
        channels: base width; level i has ``channels * mults[i]`` channels (each divisible by ``groups``).
        mults: width multipliers per level, e.g. (1, 2, 2): 28 -> 14 -> 7.
        res_blocks: residual blocks per level on the way down (one more on the way up).
        attention: 1 for self-attention in the middle (lowest resolution), 0 for none.
        heads: attention heads (divide the lowest level's channels).
        groups: GroupNorm groups.
        n_classes: classes; embedding ``n_classes`` is the null class.
        t_freqs: time frequencies; t_dim: width of the time/class embedding.
    """

    def __init__(self, shape=(1, 28, 28), channels: int = 32, mults=(1, 2, 2), res_blocks: int = 1,
                 attention: int = 1, heads: int = 4, groups: int = 8, n_classes: int = 10, t_freqs: int = 8,
                 t_dim: int = 128):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.dim, self.n_classes = math.prod(self.shape), n_classes
        self.register_buffer("freqs", math.pi * torch.arange(1, t_freqs + 1, dtype=torch.float32),
                             persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(1 + 2 * t_freqs, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.class_emb = nn.Embedding(n_classes + 1, t_dim)
        self.stem = nn.Conv2d(self.shape[0], channels, 3, padding=1)
        widths = [channels * m for m in mults]
        pixels = [(self.shape[1] >> i) * (self.shape[2] >> i) for i in range(len(widths))]
        skips, c = [(channels, pixels[0])], channels  # (channels, pixels) of each map kept for the way up
        down = []
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(res_blocks):
                blocks.append(ResBlock(c, w, t_dim, groups))
                c = w
                skips.append((c, pixels[i]))
            last = i == len(widths) - 1
            down.append(Level(blocks, None if last else nn.Conv2d(c, c, 3, stride=2, padding=1)))
            if not last:
                skips.append((c, pixels[i + 1]))
        #: floats per sample one pass holds at once (an upper bound): every skip map, and twice the widest
        #: block input (it and its normalised copy); the attention's (h w)^2 scores are small beside them
        self.working_floats = sum(ch * px for ch, px in skips)
        self.down = nn.ModuleList(down)
        self.mid1 = ResBlock(c, c, t_dim, groups)
        self.attn = Attention(c, heads, groups) if attention else None
        self.mid2 = ResBlock(c, c, t_dim, groups)
        up, widest = [], 0
        for i, w in reversed(list(enumerate(widths))):
            blocks = []
            for _ in range(res_blocks + 1):
                skip, _ = skips.pop()
                blocks.append(ResBlock(c + skip, w, t_dim, groups))
                widest = max(widest, (c + skip) * pixels[i])
                c = w
            up.append(Level(blocks, nn.Conv2d(c, c, 3, padding=1) if i > 0 else None))
        self.up = nn.ModuleList(up)
        self.working_floats += 2 * widest
        self.out_norm = nn.GroupNorm(groups, c)
        self.out = nn.Conv2d(c, self.shape[0], 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, t: torch.Tensor, c: torch.Tensor, n: int, dtype) -> torch.Tensor:
        """The time + class embedding, (n, t_dim)."""
        t = torch.as_tensor(t, dtype=dtype, device=c.device)
        t = t.reshape(1, 1).expand(n, 1) if t.numel() == 1 else t.reshape(-1, 1)
        ang = t * self.freqs.to(dtype)
        e = self.time_mlp(torch.cat([t, torch.sin(ang), torch.cos(ang)], dim=1))
        return F.silu(e + self.class_emb(c).to(e.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        e = self.embed(t, c, n, x.dtype)
        h = self.stem(x.reshape(n, *self.shape))
        hs = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, e)
                hs.append(h)
            if level.resample is not None:
                h = level.resample(h)
                hs.append(h)
        h = self.mid1(h, e)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, e)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), e)
            if level.resample is not None:
                h = level.resample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h))).reshape(n, self.dim)


def unet_from_config(config: dict) -> UNet:
    """The UNet of a checked ``mmmi_dsl.cnf/1`` config with ``arch = "unet"``."""
    return UNet(shape=tuple(config["shape"]), channels=int(config["channels"]), mults=tuple(config["mults"]),
                res_blocks=int(config["res_blocks"]), attention=int(config["attention"]),
                heads=int(config["heads"]), groups=int(config["groups"]), n_classes=int(config["n_classes"]),
                t_freqs=int(config["t_freqs"]), t_dim=int(config["t_dim"]))
