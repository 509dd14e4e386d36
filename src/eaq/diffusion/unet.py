"""Conv1D temporal U-Net denoiser (Diffuser-style) over episode tensors ``[B, L, C]``.

Residual blocks of Conv1d(k=5) + GroupNorm + Mish with the diffusion-time embedding added in
between, strided down-sampling, transposed-conv up-sampling and skip connections (convolutions
from ``eaq.diffusion.conv``: matrix products, fast inside ``lax.scan`` on XLA:CPU). With
``len(channel_mults) = K`` levels the time axis is halved K - 1 times, so ``L`` must be a
multiple of ``2 ** (K - 1)`` (``padded_length`` gives one).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from eaq.diffusion.conv import Conv, ConvTranspose


def mish(x: jax.Array) -> jax.Array:
    return x * jnp.tanh(jax.nn.softplus(x))


def padded_length(length: int, n_levels: int) -> int:
    """Smallest multiple of the down-sampling factor ``2 ** (n_levels - 1)`` that is >= length."""
    factor = 2 ** (n_levels - 1)
    return factor * math.ceil(length / factor)


def sinusoidal_embedding(t: jax.Array, dim: int) -> jax.Array:
    """``t: [B]`` (diffusion step, any real) -> ``[B, dim]`` sin/cos features."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ConvBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish on ``[B, L, C]``."""

    features: int
    kernel_size: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(self.features, (self.kernel_size,), padding="SAME")(x)
        return mish(nn.GroupNorm(num_groups=self.groups)(x))


class ResidualBlock(nn.Module):
    """Two ConvBlocks with the time embedding added between them, plus a (1x1) skip."""

    features: int
    kernel_size: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, t_emb: jax.Array) -> jax.Array:
        h = ConvBlock(self.features, self.kernel_size, self.groups)(x)
        h = h + nn.Dense(self.features)(mish(t_emb))[:, None, :]
        h = ConvBlock(self.features, self.kernel_size, self.groups)(h)
        skip = x if x.shape[-1] == self.features else Conv(self.features, (1,))(x)
        return h + skip


class TemporalUNet(nn.Module):
    """``(x_t: [B, L, C], t: [B]) -> [B, L, C]`` (the model predicts the clean episode x0).

    Channels per level: ``base_channels * m`` for m in ``channel_mults``.
    """

    out_channels: int
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        dims = [self.base_channels * m for m in self.channel_mults]
        factor = 2 ** (len(dims) - 1)
        if x.shape[1] % factor:
            raise ValueError(f"sequence length {x.shape[1]} is not a multiple of {factor}; pad it")
        res = lambda d: ResidualBlock(d, self.kernel_size, self.groups)  # noqa: E731

        e = self.base_channels
        t_emb = sinusoidal_embedding(t, e)
        t_emb = nn.Dense(e)(mish(nn.Dense(4 * e)(t_emb)))

        h = x
        skips = []
        for level, d in enumerate(dims):
            h = res(d)(h, t_emb)
            h = res(d)(h, t_emb)
            skips.append(h)
            if level < len(dims) - 1:
                h = Conv(d, (3,), strides=(2,), padding="SAME")(h)  # halve the time axis
        h = res(dims[-1])(h, t_emb)
        h = res(dims[-1])(h, t_emb)
        for level in reversed(range(len(dims))):
            h = jnp.concatenate([h, skips[level]], axis=-1)
            h = res(dims[level])(h, t_emb)
            h = res(dims[level])(h, t_emb)
            if level > 0:
                h = ConvTranspose(dims[level - 1], (4,), strides=(2,), padding="SAME")(h)
        h = ConvBlock(dims[0], self.kernel_size, self.groups)(h)
        return Conv(self.out_channels, (1,))(h)
