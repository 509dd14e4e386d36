"""IPPO for SMAX, PureJaxRL style: the whole update (rollout, GAE, PPO epochs) is one jit-able
function; ``make_train(config, map_name)`` returns a pure ``train(rng)``.

One actor-critic is shared by all agents (with a one-hot agent id), illegal actions are
masked, and time-limit truncations bootstrap from the critic on the true last observation
(only real endings cut the return). Each (environment, agent) pair is one batch row:
B = num_envs x N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from eaq.behaviour.config import IPPOConfig
from eaq.behaviour.networks import ActorCritic, with_agent_ids
from eaq.env import SmaxEnv, TimeStep, make_env


@struct.dataclass
class Runner:
    """Everything a training run needs to continue (checkpointed as a whole).

    env_state / ts: batched over E environments (ts.obs [E, N, O]); resets: [B] bool, the
    next step starts a new episode (GRU reset); hidden: [B, H]; ep_return: [E] running return;
    lr_scale: [] multiplies every parameter step (1 in training, < 1 in band refinement).
    """

    params: Any
    opt_state: Any
    env_state: Any
    ts: TimeStep
    resets: jax.Array
    hidden: jax.Array
    ep_return: jax.Array
    rng: jax.Array
    update: jax.Array
    lr_scale: jax.Array


@struct.dataclass
class UpdateMetrics:
    """Per update: episodes finished during the rollout, their summed return and wins, losses."""

    episodes: jax.Array
    return_sum: jax.Array
    wins: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array


@struct.dataclass
class Transition:
    """One rollout step for B rows: obs [B, D], legals [B, A], everything else [B]."""

    obs: jax.Array
    legals: jax.Array
    resets: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    truncated_value: jax.Array


@dataclass(frozen=True)
class IPPO:
    """The compiled-once pieces of an IPPO run on one map."""

    config: IPPOConfig
    env: SmaxEnv
    network: ActorCritic
    init: Callable[[jax.Array], Runner]
    update: Callable[[Runner], tuple[Runner, UpdateMetrics]]

    @property
    def hidden_size(self) -> int:
        return self.config.gru_dim if self.config.recurrent else 1

    def init_carry(self) -> jax.Array:
        """Policy carry for one episode: hidden state [N, H]."""
        return jnp.zeros((self.env.spec.n_agents, self.hidden_size), jnp.float32)

    def _logits(self, params, hidden, ts: TimeStep):
        n = self.env.spec.n_agents
        obs = with_agent_ids(ts.obs)[None]
        hidden, logits = self.network.apply(
            params, hidden, obs, jnp.zeros((1, n), bool), ts.legals[None], method=ActorCritic.actor
        )
        return logits[0], hidden

    def greedy_policy(self, params, carry, ts: TimeStep, key):
        """PolicyFn: argmax over legal actions (for evaluation)."""
        logits, carry = self._logits(params, carry, ts)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), carry

    def epsilon_greedy_policy(self, epsilon: float):
        """PolicyFn: each agent acts greedily, or with probability epsilon uniformly over its
        legal actions (OG-MARL's data collection)."""

        def policy(params, carry, ts: TimeStep, key):
            logits, carry = self._logits(params, carry, ts)
            greedy = jnp.argmax(logits, axis=-1)
            explore_key, pick_key = jax.random.split(key)
            uniform = jax.random.categorical(pick_key, jnp.where(ts.legals, 0.0, -jnp.inf))
            explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
            return jnp.where(explore, uniform, greedy).astype(jnp.int32), carry

        return policy


def make_ippo(config: IPPOConfig, map_name: str) -> IPPO:
    """Builds the network, optimiser, ``init(rng) -> Runner`` and ``update(runner)``."""
    env = make_env(map_name)
    spec = env.spec
    E, N, A = config.num_envs, spec.n_agents, spec.n_actions
    B = E * N
    D = spec.obs_dim + N
    if B % config.num_minibatches:
        raise ValueError(
            f"num_envs x agents ({E} x {N} = {B}) must be divisible by num_minibatches "
            f"({config.num_minibatches})"
        )
    H = config.gru_dim if config.recurrent else 1
    net = ActorCritic(A, config.hidden_dim, config.recurrent, config.gru_dim)
    steps_per_update = config.update_epochs * config.num_minibatches

    def schedule(count):
        if not config.anneal_lr:
            return config.lr
        frac = 1.0 - (count // steps_per_update) / config.num_updates
        return config.lr * jnp.maximum(frac, 0.0)

    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(schedule, eps=1e-5)
    )

    def init(rng: jax.Array) -> Runner:
        rng, net_key, env_key = jax.random.split(rng, 3)
        params = net.init(
            net_key, jnp.zeros((B, H)), jnp.zeros((1, B, D)), jnp.zeros((1, B), bool),
            jnp.ones((1, B, A), bool),
        )
        env_state, ts = jax.vmap(env.reset)(jax.random.split(env_key, E))
        runner = Runner(
            params=params, opt_state=optimizer.init(params), env_state=env_state, ts=ts,
            resets=jnp.ones((B,), bool), hidden=jnp.zeros((B, H)), ep_return=jnp.zeros((E,)),
            rng=rng, update=jnp.zeros((), jnp.int32), lr_scale=jnp.ones((), jnp.float32),
        )
        # Strong dtypes everywhere (SMAX's reset makes some weakly typed), so the state a
        # segment returns has exactly the input's types and nothing recompiles.
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), runner)

    def rows(ts: TimeStep):
        return with_agent_ids(ts.obs).reshape(B, D), ts.legals.reshape(B, A)

    def env_step(carry, _):
        r, stats = carry
        rng, act_key, env_key = jax.random.split(r.rng, 3)
        obs, legals = rows(r.ts)
        hidden, logits, value = net.apply(
            r.params, r.hidden, obs[None], r.resets[None], legals[None]
        )
        logits, value = logits[0], value[0]
        action = jax.random.categorical(act_key, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        env_state, out, next_ts = jax.vmap(env.auto_reset_step)(
            jax.random.split(env_key, E), r.env_state, action.reshape(E, N).astype(jnp.int32)
        )
        # A time limit is not an ending: bootstrap from the critic on the true last observation.
        last_obs, _ = rows(out.next)
        v_last = net.apply(r.params, last_obs, method=ActorCritic.critic)
        per_row = lambda x: jnp.repeat(x, N)  # noqa: E731  [E] -> [B], env-major like obs
        done = out.terminal | out.truncated
        ep_return = r.ep_return + out.reward
        stats = (
            stats[0] + done.sum(),
            stats[1] + jnp.where(done, ep_return, 0.0).sum(),
            stats[2] + (done & out.won).sum(),
        )
        tr = Transition(
            obs=obs, legals=legals, resets=r.resets, action=action, log_prob=log_prob,
            value=value, reward=per_row(out.reward), done=per_row(done),
            truncated_value=jnp.where(per_row(out.truncated), v_last, 0.0),
        )
        r = r.replace(
            env_state=env_state, ts=next_ts, resets=per_row(done), hidden=hidden,
            ep_return=jnp.where(done, 0.0, ep_return), rng=rng,
        )
        return (r, stats), tr

    def advantages(traj: Transition, last_value):
        def step(carry, t: Transition):
            gae, next_value = carry
            boot = jnp.where(t.done, t.truncated_value, next_value)
            delta = t.reward + config.gamma * boot - t.value
            gae = delta + config.gamma * config.gae_lambda * (1.0 - t.done) * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(step, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
        return adv, adv + traj.value

    def loss_fn(params, hidden0, traj: Transition, adv, targets):
        _, logits, value = net.apply(params, hidden0, traj.obs, traj.resets, traj.legals)
        logp_all = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(logp_all, traj.action[..., None], -1)[..., 0]
        ratio = jnp.exp(log_prob - traj.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clipped = jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps)
        policy_loss = -jnp.minimum(ratio * adv, clipped * adv).mean()
        v_clipped = traj.value + jnp.clip(value - traj.value, -config.clip_eps, config.clip_eps)
        value_loss = 0.5 * jnp.maximum((value - targets) ** 2, (v_clipped - targets) ** 2).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        return total, (policy_loss, value_loss, entropy)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(r: Runner) -> tuple[Runner, UpdateMetrics]:
        hidden0 = r.hidden
        zero = jnp.zeros((), jnp.float32)
        (r, stats), traj = jax.lax.scan(
            env_step, (r, (zero, zero, zero)), None, config.num_steps
        )
        last_obs, _ = rows(r.ts)
        adv, targets = advantages(traj, net.apply(r.params, last_obs, method=ActorCritic.critic))

        M = config.num_minibatches

        def epoch(carry, key):
            params, opt_state = carry
            perm = jax.random.permutation(key, B)
            # [T, B, ...] -> [M, T, B/M, ...]: minibatches split rows, keep whole sequences.
            split_rows = lambda x: jnp.swapaxes(  # noqa: E731
                jnp.take(x, perm, axis=1).reshape(x.shape[0], M, B // M, *x.shape[2:]), 0, 1
            )
            batches = (
                jnp.take(hidden0, perm, axis=0).reshape(M, B // M, H),
                jax.tree.map(split_rows, traj), split_rows(adv), split_rows(targets),
            )

            def minibatch(carry, batch):
                params, opt_state = carry
                (_, aux), grads = grad_fn(params, *batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                updates = jax.tree.map(lambda u: u * r.lr_scale, updates)
                return (optax.apply_updates(params, updates), opt_state), aux

            return jax.lax.scan(minibatch, (params, opt_state), batches)

        rng, epoch_key = jax.random.split(r.rng)
        (params, opt_state), aux = jax.lax.scan(
            epoch, (r.params, r.opt_state), jax.random.split(epoch_key, config.update_epochs)
        )
        r = r.replace(params=params, opt_state=opt_state, rng=rng, update=r.update + 1)
        metrics = UpdateMetrics(
            episodes=stats[0], return_sum=stats[1], wins=stats[2],
            policy_loss=aux[0].mean(), value_loss=aux[1].mean(), entropy=aux[2].mean(),
        )
        return r, metrics

    return IPPO(config=config, env=env, network=net, init=init, update=update)


def make_segment(ippo: IPPO, n_updates: int):
    """``segment(runner) -> (runner, UpdateMetrics [n_updates])``: n updates in one lax.scan."""

    def segment(r: Runner):
        return jax.lax.scan(lambda r, _: ippo.update(r), r, None, n_updates)

    return segment


def make_train(config: IPPOConfig, map_name: str):
    """PureJaxRL entry point: ``train(rng) -> (final Runner, UpdateMetrics [num_updates])``,
    the whole step budget as one pure, jit-able function (no checkpoints; see
    ``eaq.behaviour.training.train_behaviour`` for the checkpointed, resumable run)."""
    ippo = make_ippo(config, map_name)
    segment = make_segment(ippo, config.num_updates)

    def train(rng: jax.Array):
        return segment(ippo.init(rng))

    return train
