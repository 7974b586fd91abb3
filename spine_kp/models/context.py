"""Global context on the deepest feature map: every cell sees the whole image before the decoder runs.

A heatmap U-Net reads each landmark from local evidence; its channels then name a disc by how it looks, and on real
studies a chain placed one whole level off (L5-S1 on the L4-L5 disc, or on a sacral segment) is the common error.
Which disc is L5-S1 is a question about the whole image: where the sacrum is, how many discs lie above it. Here
``attention`` runs pre-norm transformer encoder layers (Vaswani et al., 2017; as the bottleneck of TransUNet) over the
cells of the backbone's deepest map (stride 32: 36 cells for a 192 px input), with a fixed 2-D sine position code
so any input size works, and adds the result back through a zero-initialised projection: a freshly added block is
the identity, so a checkpoint without it warm-starts (``--init``) to the same network.

Attention is written out (matmul and softmax) rather than through ``nn.MultiheadAttention``, whose inference fast
path does not export to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spine_kp.models.registry import Registry

CONTEXTS = Registry("context")


def sine_positions(height: int, width: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(height * width, dim) 2-D sine/cosine position code, half the channels for rows, half for columns.

    Rows and columns are scaled to [0, 1], so a code means the same place in the image at any input size.
    """
    if dim % 4:
        raise ValueError(f"context dim must be a multiple of 4 for a 2-D sine code, got {dim}")
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(100.0) / max(quarter, 1)))
    ys = torch.linspace(0.0, 1.0, height, device=device) if height > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(0.0, 1.0, width, device=device) if width > 1 else torch.zeros(1, device=device)
    ay = ys[:, None] * freq[None, :] * 2 * math.pi  # (H, dim/4)
    ax = xs[:, None] * freq[None, :] * 2 * math.pi  # (W, dim/4)
    code_y = torch.cat([ay.sin(), ay.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    code_x = torch.cat([ax.sin(), ax.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([code_y, code_x], dim=-1).reshape(height * width, dim)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"context dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)  # (B, heads, N, N)
        x = x + self.drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class GlobalAttention(nn.Module):
    """Transformer layers over the cells of a feature map, added back as a residual (zero at initialisation).

    Args:
        channels: channels of the map it runs on.
        dim: token width (a 1x1 convolution maps ``channels`` to it and back).
        heads: attention heads.
        layers: encoder layers.
        mlp_ratio: hidden width of each layer's MLP as a multiple of ``dim``.
        dropout: dropout on the attention output and in the MLP.
    """

    def __init__(
        self,
        channels: int,
        dim: int = 128,
        heads: int = 4,
        layers: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim < 4 or layers < 1 or heads < 1:
            raise ValueError(f"context: dim >= 4, heads >= 1 and layers >= 1 needed, got {dim}, {heads}, {layers}")
        self.dim = dim
        self.proj_in = nn.Conv2d(channels, dim, 1)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.proj_out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.proj_out.weight)  # the block starts as the identity (warm starts stay what they were)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = self.proj_in(x).flatten(2).transpose(1, 2)  # (B, H*W, dim)
        tokens = tokens + sine_positions(h, w, self.dim, x.device).to(tokens.dtype)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm(tokens).transpose(1, 2).reshape(b, self.dim, h, w)
        return x + self.proj_out(tokens)


@CONTEXTS.register("none")
def no_context(channels: int) -> None:
    """No context block: the decoder reads the backbone's maps as they are."""
    return None


@CONTEXTS.register("attention")
def attention_context(channels: int, **kwargs: object) -> GlobalAttention:
    """:class:`GlobalAttention` on the deepest map (``model.context_kwargs``: its keyword arguments)."""
    return GlobalAttention(channels, **kwargs)  # type: ignore[arg-type]


def create_context(name: str, channels: int, **kwargs: object) -> nn.Module | None:
    """Build the context block registered as ``name`` for a deepest map of ``channels`` (None for "none")."""
    entry = CONTEXTS.get(name)
    if name == "none" and kwargs:
        raise ValueError(f"model.context_kwargs {sorted(kwargs)} given, but model.context is 'none'")
    return entry.builder(channels, **kwargs)
