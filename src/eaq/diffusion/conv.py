"""1-D convolutions written as one matrix product (im2col), drop-in for flax's Conv / ConvTranspose.

Why not ``flax.linen.Conv``: on XLA:CPU a convolution inside a while loop (our ``lax.scan``
training segments and DDIM sampler) runs several times slower than outside one (jax-ml/jax
#12868). Measured on the 2-core CPU with the default U-Net (docs/diffusion.md): 0.72 updates/s
with XLA convolutions in the scan, 8.2 with these. Dot products do not have that problem, and
on a GPU the two forms cost about the same.

The modules are named ``Conv`` and ``ConvTranspose`` and declare the same parameters as
flax's (``kernel: [k, C_in, C_out]``, ``bias: [C_out]``, same initialisers), so parameter trees,
initial values and checkpoints are identical to the flax versions; only "SAME" padding is
supported. Shapes: ``x: [B, L, C_in]`` -> ``[B, L', C_out]``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv1d_matmul(
    x: jax.Array,
    kernel: jax.Array,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    input_dilation: int = 1,
) -> jax.Array:
    """Cross-correlation of ``x: [B, L, C_in]`` with ``kernel: [k, C_in, C_out]``.

    ``input_dilation`` inserts ``d - 1`` zeros between input steps first (a transposed
    convolution), then ``padding`` (before, after) zeros, then a window every ``stride`` steps.
    """
    k, c_in, c_out = kernel.shape
    if input_dilation > 1:
        dilated_len = (x.shape[1] - 1) * input_dilation + 1
        x = jnp.zeros((x.shape[0], dilated_len, c_in), x.dtype).at[:, ::input_dilation].set(x)
    x = jnp.pad(x, ((0, 0), padding, (0, 0)))
    n_out = (x.shape[1] - k) // stride + 1
    if k == 1 and stride == 1:
        return x @ kernel[0]
    # im2col: column block i holds x[t * stride + i]; matches kernel.reshape(k * C_in, C_out).
    windows = [x[:, i : i + stride * (n_out - 1) + 1 : stride] for i in range(k)]
    return jnp.concatenate(windows, axis=-1) @ kernel.reshape(k * c_in, c_out)


def _declare(module: nn.Module, c_in: int) -> tuple[int, int, jax.Array, jax.Array]:
    """(k, stride, kernel [k, C_in, C_out], bias [C_out]) with flax's names and initialisers."""
    if module.padding != "SAME":
        raise ValueError(f"only padding='SAME' is supported, got {module.padding!r}")
    (k,), (s,) = module.kernel_size, module.strides
    kernel = module.param("kernel", nn.initializers.lecun_normal(), (k, c_in, module.features))
    bias = module.param("bias", nn.initializers.zeros_init(), (module.features,))
    return k, s, kernel, bias


class Conv(nn.Module):
    """``flax.linen.Conv`` (1-D, 'SAME' padding, optional stride) as a matrix product."""

    features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...] = (1,)
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, kernel, bias = _declare(self, x.shape[-1])
        length = x.shape[1]
        pad = max((math.ceil(length / s) - 1) * s + k - length, 0)  # XLA's SAME rule
        return conv1d_matmul(x, kernel, s, (pad // 2, pad - pad // 2)) + bias


class ConvTranspose(Conv):
    """``flax.linen.ConvTranspose`` (1-D, 'SAME' padding, no kernel flip) as a matrix product:
    output length ``L * stride``. Same fields as ``Conv``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, kernel, bias = _declare(self, x.shape[-1])
        # lax.conv_transpose's SAME padding of the dilated input.
        pad_len = k + s - 2
        before = k - 1 if s > k - 1 else math.ceil(pad_len / 2)
        return conv1d_matmul(x, kernel, 1, (before, pad_len - before), input_dilation=s) + bias
