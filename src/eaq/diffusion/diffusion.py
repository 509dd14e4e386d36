"""DDPM over normalised episode tensors: cosine noise schedule, the x0-prediction training
objective, a DDIM sampler with a configurable number of steps, and EMA weights.

The denoiser predicts the clean episode x0 directly (as Diffuser does for trajectories), so the
Q_tot loss can read the predicted clean episode without dividing by a vanishing sqrt(alpha_bar).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# denoise(params, x_t: [B, L, C], t: [B] int) -> x0_hat: [B, L, C]
Denoiser = Callable[[object, jax.Array, jax.Array], jax.Array]


def cosine_alpha_bars(n_steps: int, s: float = 0.008) -> np.ndarray:
    """``alpha_bar[k]`` for k = 0..K-1 (k = 0 the least noisy), Nichol & Dhariwal's cosine."""
    steps = np.arange(n_steps + 1, dtype=np.float64) / n_steps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
    return np.cumprod(1 - betas).astype(np.float32)


def noisy(x0: jax.Array, t: jax.Array, noise: jax.Array, alpha_bars: jax.Array) -> jax.Array:
    """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise`` for per-sample levels ``t: [B]``."""
    ab = alpha_bars[t][:, None, None]
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def min_snr_weights(alpha_bars: np.ndarray, gamma: float) -> np.ndarray:
    """Per-noise-level weights ``min(SNR_k, gamma)`` of the x0-prediction loss (Hang et al.,
    2023, "Min-SNR"), scaled to mean 1 over the levels; ``SNR_k = ab_k / (1 - ab_k)``.

    With uniform weights the noisiest levels, whose x0 error is mostly irreducible (the
    posterior mean of a bimodal quantity is between its modes), dominate the gradient; these
    weights shift it to the levels that decide the details."""
    ab = np.asarray(alpha_bars, np.float64)
    w = np.minimum(ab / np.maximum(1.0 - ab, 1e-12), gamma)
    return (w / w.mean()).astype(np.float32)


def diffusion_loss(
    denoise: Denoiser,
    params,
    x0: jax.Array,
    time_valid: jax.Array,
    key: jax.Array,
    alpha_bars: jax.Array,
    level_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean squared error of the predicted clean episode over all channels and the first T
    (un-padded) steps. ``x0: [B, L, C]``, ``time_valid: [L]`` bool; ``level_weights: [K]``
    weigh each sample's error by its noise level (None: uniform; ``min_snr_weights``).

    Returns (loss, x0_hat [B, L, C]).
    """
    k_t, k_noise = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, alpha_bars.shape[0])
    x_t = noisy(x0, t, jax.random.normal(k_noise, x0.shape, x0.dtype), alpha_bars)
    x0_hat = denoise(params, x_t, t)
    w = time_valid.astype(x0.dtype)[None, :, None]
    err = jnp.square(x0_hat - x0) * w
    if level_weights is not None:
        err = err * level_weights[t][:, None, None]
    loss = err.sum() / (w.sum() * x0.shape[0] * x0.shape[2])
    return loss, x0_hat


def ddim_sample(
    denoise: Denoiser,
    params,
    key: jax.Array,
    shape: tuple[int, int, int],
    alpha_bars: jax.Array,
    n_sample_steps: int,
    clip: float,
    sharding=None,
    known: jax.Array | None = None,
    known_mask: jax.Array | None = None,
    guidance: float = 0.0,
    guide_mask: jax.Array | None = None,
    eta: float = 0.0,
) -> jax.Array:
    """DDIM from pure noise in ``n_sample_steps`` steps -> ``[B, L, C]``.

    ``eta``: the sampler's stochasticity (Song et al., 2021, eq. 16): 0 is deterministic DDIM,
    1 adds the posterior's noise at every step as DDPM's ancestral sampler does. With an exact
    x0-predictor both reach the data distribution; with an imperfect one they err differently
    (on a Gaussian toy whose predictor shrinks by 0.8, eta = 1 keeps less spread than eta = 0).

    ``sharding``: optional sharding of the samples (the batch axis over devices).
    ``known: [B, L, C]`` and ``known_mask: [B, L, C]`` bool: inpainting. Where the mask is set,
    the predicted clean episode is replaced by the known value at every step (so the free
    entries are denoised around it) and the sample ends equal to it. ``guidance`` > 0 adds
    reconstruction guidance (Ho et al., 2022, "Video Diffusion Models"): before the replacement,
    the prediction moves by ``-guidance * sqrt(alpha_bar) / 2`` times the gradient, with respect
    to the noisy sample, of the squared error between the known values and their prediction
    over ``guide_mask`` (default: ``known_mask``); this makes the free entries agree with the
    guided known ones (replacement alone barely does).
    """
    K = alpha_bars.shape[0]
    guided = known_mask if guide_mask is None else guide_mask
    levels = np.round(np.linspace(K - 1, 0, n_sample_steps)).astype(np.int32)
    prev = np.concatenate([levels[1:], [-1]]).astype(np.int32)
    ab_ext = jnp.concatenate([alpha_bars, jnp.ones((1,), alpha_bars.dtype)])  # index -1 -> 1

    def step(x, inputs):
        t, t_prev, step_key = inputs
        ab, ab_prev = ab_ext[t], ab_ext[t_prev]
        level = jnp.full((shape[0],), t)
        if known is not None and guidance > 0:

            def known_error(x_t):
                pred = denoise(params, x_t, level)
                return jnp.sum(jnp.where(guided, pred - known, 0.0) ** 2), pred

            grad, x0 = jax.grad(known_error, has_aux=True)(x)
            x0 = x0 - guidance * jnp.sqrt(ab) / 2 * grad
        else:
            x0 = denoise(params, x, level)
        x0 = jnp.clip(x0, -clip, clip)
        if known is not None:
            x0 = jnp.where(known_mask, known, x0)
        eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
        x_prev = jnp.sqrt(ab_prev) * x0
        if eta == 0.0:
            return x_prev + jnp.sqrt(1.0 - ab_prev) * eps, None
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        z = jax.random.normal(step_key, shape, jnp.float32)
        if sharding is not None:
            z = jax.lax.with_sharding_constraint(z, sharding)
        return x_prev + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps + sigma * z, None

    x = jax.random.normal(key, shape, jnp.float32)
    if sharding is not None:  # e.g. split the episodes over devices
        x = jax.lax.with_sharding_constraint(x, sharding)
    # the start noise keeps its key, so eta = 0 samples what it always did
    step_keys = jax.random.split(jax.random.fold_in(key, 1), n_sample_steps)
    x, _ = jax.lax.scan(step, x, (jnp.asarray(levels), jnp.asarray(prev), step_keys))
    if known is not None:
        x = jnp.where(known_mask, known, x)
    return x


def ema_update(ema_params, params, decay: float, step: jax.Array):
    """EMA with warm-up: early weights are not averaged with the random initialisation."""
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)
