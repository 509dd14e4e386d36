"""Episode codec: EpisodeBatch <-> a normalised tensor ``x: [E, L, C]`` the diffusion model learns.

One step is one vector of C channels, agent-major, then the team channels::

    for each agent i:  obs_i [O] | one-hot action_i [A] | legal-action bits_i [A]
    then:              state [S] | reward [1] | terminal [1] | alive (mask) [1]

so ``C = N * (O + 2A) + S + 3`` (3m: 348). With ``obs_from_state`` the model generates no
observations and no legal bits, which SMAX computes from the state (eaq.env.project)::

    for each agent i:  one-hot action_i [A]
    then:              state [S] | enemies' previous moves and attacks [3 n_enemies] | reward | terminal | alive

so ``C = N * A + S + 3 n_enemies + 3`` (3m: 108). With ``motion`` (only with ``obs_from_state``)
each unit's displacement to the next step follows the enemies' channels, 2 per unit (3m: 120
channels); the decoder rebuilds the positions from the first step's and these. ``L >= T`` pads the time axis (the U-Net down-samples)
with padding steps. Padding, inside or after an episode, is raw zeros (``alive = 0``), exactly
as in the data model.

Normalisation (``Normaliser``, stored inside the model checkpoint) is per channel,
``x = (raw - mean) / scale``:
- binary channels (one-hot actions, legal bits, terminal, alive): mean 0.5, scale 0.5, so
  {0, 1} -> {-1, +1} and decoding thresholds at 0;
- the reward: mean 0 and a power-of-two scale, so encode/decode is exact in float32;
- observations, state and the enemies' actions: mean and standard deviation over in-episode steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaq.data.batch import EpisodeBatch
from eaq.env.project import ENEMY_ACTION_FEATURES, enemy_count, projector
from eaq.env.smax import EnvSpec

_STD_FLOOR = 1e-3


@dataclass(frozen=True)
class EpisodeLayout:
    """Where each quantity lives in a step vector of ``n_channels`` channels."""

    spec: EnvSpec
    """The map (sizes N, O, S, A, T)."""
    obs_from_state: bool = False
    """No observation or legal channels: they are computed from the state (eaq.env.project);
    the enemies' previous actions, which the state does not hold, get channels of their own."""
    motion: bool = False
    """Also each unit's displacement to the next step (``obs_from_state`` only; see
    eaq.diffusion.config's "from_state_motion")."""

    def __post_init__(self):
        if self.motion and not self.obs_from_state:
            raise ValueError("motion channels exist only in the obs_from_state layout")

    @property
    def per_agent(self) -> int:
        """Channels per agent: observation, one-hot action, legal bits (action only with
        ``obs_from_state``)."""
        if self.obs_from_state:
            return self.spec.n_actions
        return self.spec.obs_dim + 2 * self.spec.n_actions

    @property
    def state_start(self) -> int:
        return self.spec.n_agents * self.per_agent

    @property
    def n_enemy_channels(self) -> int:
        """3 per enemy (its previous move x, y and attack) with ``obs_from_state``, else 0."""
        return ENEMY_ACTION_FEATURES * enemy_count(self.spec) if self.obs_from_state else 0

    @property
    def n_motion_channels(self) -> int:
        """2 per unit (allies and enemies) with ``motion``, else 0."""
        return 2 * (self.spec.n_agents + enemy_count(self.spec)) if self.motion else 0

    @property
    def reward_channel(self) -> int:
        return self.state_start + self.spec.state_dim + self.n_enemy_channels + self.n_motion_channels

    @property
    def terminal_channel(self) -> int:
        return self.reward_channel + 1

    @property
    def alive_channel(self) -> int:
        return self.reward_channel + 2

    @property
    def n_channels(self) -> int:
        return self.reward_channel + 3

    def channel_kinds(self) -> np.ndarray:
        """[C] str: 'obs', 'action', 'legal', 'state', 'enemy', 'motion', 'reward', 'terminal' or 'alive'."""
        O, A = self.spec.obs_dim, self.spec.n_actions
        agent = ["action"] * A if self.obs_from_state else ["obs"] * O + ["action"] * A + ["legal"] * A
        kinds = agent * self.spec.n_agents + ["state"] * self.spec.state_dim + ["enemy"] * self.n_enemy_channels
        kinds += ["motion"] * self.n_motion_channels
        return np.array(kinds + ["reward", "terminal", "alive"])

    def split(self, x: Any) -> dict[str, Any]:
        """Views of ``x: [..., C]`` (numpy or jax): obs [..., N, O], action [..., N, A],
        legal [..., N, A], state [..., S], reward / terminal / alive [...]; with
        ``obs_from_state`` no obs and legal but enemy [..., 3 n_enemies]; with ``motion`` also
        motion [..., U, 2]."""
        N, O, A = self.spec.n_agents, self.spec.obs_dim, self.spec.n_actions
        agents = x[..., : self.state_start].reshape(*x.shape[:-1], N, self.per_agent)
        state_end = self.state_start + self.spec.state_dim
        parts = {
            "state": x[..., self.state_start : state_end],
            "reward": x[..., self.reward_channel],
            "terminal": x[..., self.terminal_channel],
            "alive": x[..., self.alive_channel],
        }
        if self.obs_from_state:
            enemy_end = state_end + self.n_enemy_channels
            parts.update(action=agents, enemy=x[..., state_end:enemy_end])
            if self.motion:
                motion = x[..., enemy_end : self.reward_channel]
                parts["motion"] = motion.reshape(*x.shape[:-1], self.n_motion_channels // 2, 2)
        else:
            parts.update(obs=agents[..., :O], action=agents[..., O : O + A], legal=agents[..., O + A :])
        return parts


@dataclass(frozen=True)
class Normaliser:
    """Per-channel affine normalisation ``x = (raw - mean) / scale`` (both [C] float32).

    A channel that is constant in the data has scale 0: it normalises to 0 and denormalises to
    its constant exactly, whatever the model puts there (SMAX has many: on 3m, 90 of 225
    observation and 42 of 72 state features never vary). Checkpoints saved before this used
    scale 1 there and keep working as they were."""

    mean: np.ndarray
    scale: np.ndarray

    def normalise(self, raw):
        return (raw - self.mean) / np.where(self.scale > 0, self.scale, 1.0).astype(np.float32)

    def denormalise(self, x):
        return x * self.scale + self.mean

    def to_tree(self) -> dict[str, np.ndarray]:
        return {"mean": np.asarray(self.mean, np.float32), "scale": np.asarray(self.scale, np.float32)}

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> Normaliser:
        return cls(mean=np.asarray(tree["mean"], np.float32), scale=np.asarray(tree["scale"], np.float32))


def raw_tensor(
    batch: EpisodeBatch, length: int | None = None, obs_from_state: bool = False, motion: bool = False
) -> np.ndarray:
    """Un-normalised step vectors ``[E, L, C]`` float32 (L = ``length`` or T; extra steps are
    zero padding; with L < T each episode is cut after step L - 1, DiffusionConfig.horizon) in
    the layout ``EpisodeLayout(batch.spec, obs_from_state, motion)``."""
    layout = EpisodeLayout(batch.spec, obs_from_state, motion)
    E, T = batch.mask.shape
    L = T if length is None else int(length)
    if L < 1:
        raise ValueError(f"length {L} must be >= 1")
    A = batch.spec.n_actions
    m = batch.mask
    onehot = np.eye(A, dtype=np.float32)[batch.actions] * m[..., None, None]
    team = np.stack(
        [batch.rewards, batch.terminals.astype(np.float32), m.astype(np.float32)], axis=-1
    )
    if obs_from_state:
        proj = projector(batch.spec.map_name)
        enemy = np.asarray(proj.enemy_actions(batch.observations))
        parts = [onehot.reshape(E, T, -1), batch.state, enemy * m[..., None]]
        if motion:
            parts.append(proj.unit_motion(batch.state, m).reshape(E, T, -1))
    else:
        agents = np.concatenate([batch.observations, onehot, batch.legals.astype(np.float32)], axis=-1)
        parts = [agents.reshape(E, T, -1), batch.state]
    x = np.concatenate([*parts, team], axis=-1).astype(np.float32)
    assert x.shape[-1] == layout.n_channels
    if L > T:
        x = np.concatenate([x, np.zeros((E, L - T, x.shape[-1]), np.float32)], axis=1)
    return x[:, :L]


def fit_normaliser(batch: EpisodeBatch, obs_from_state: bool = False, motion: bool = False) -> Normaliser:
    """Statistics over in-episode steps; binary channels and the reward get exact maps."""
    layout = EpisodeLayout(batch.spec, obs_from_state, motion)
    kinds = layout.channel_kinds()
    raw = raw_tensor(batch, obs_from_state=obs_from_state, motion=motion)[batch.mask]  # [n_steps, C]
    mean = raw.mean(axis=0).astype(np.float64)
    std = raw.std(axis=0).astype(np.float64)
    scale = np.where(std > _STD_FLOOR, std, 1.0)
    scale[np.ptp(raw, axis=0) == 0] = 0.0  # constant channels are pinned (see Normaliser)
    binary = np.isin(kinds, ["action", "legal", "terminal", "alive"])
    mean[binary], scale[binary] = 0.5, 0.5
    r = layout.reward_channel
    mean[r] = 0.0
    # A power of two: dividing and multiplying by it is exact, so rewards round-trip bit-exactly.
    scale[r] = 2.0 ** np.ceil(np.log2(max(std[r], _STD_FLOOR)))
    return Normaliser(mean=mean.astype(np.float32), scale=scale.astype(np.float32))


def encode(
    batch: EpisodeBatch, normaliser: Normaliser, length: int | None = None, obs_from_state: bool = False,
    motion: bool = False,
) -> np.ndarray:
    """EpisodeBatch -> normalised ``x: [E, L, C]`` float32."""
    return normaliser.normalise(raw_tensor(batch, length, obs_from_state, motion)).astype(np.float32)
