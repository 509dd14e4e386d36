"""Orbax checkpoints of a behaviour training run, each stored with its greedy evaluation.

Each checkpoint (Orbax step = updates done) holds two items: ``state``, the whole training
``Runner`` (parameters, optimiser, environments, RNG: enough to resume bit-identically), and
``eval``, the greedy evaluation as JSON (used to pick Poor / Medium / Good behaviours).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from eaq.behaviour.bands import CheckpointEval

# Orbax logs every save at INFO; keep the progress bar readable.
logging.getLogger("absl").setLevel(logging.WARNING)


class CheckpointStore:
    """All checkpoints of one run in ``directory`` (kept: the band choice needs early ones)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None, create=True, enable_async_checkpointing=False
            ),
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    def save(self, runner: Any, evaluation: CheckpointEval) -> None:
        self._manager.save(
            evaluation.step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(runner), eval=ocp.args.JsonSave(evaluation.to_dict())
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore_state(self, step: int, template: Any) -> Any:
        """The Runner saved at ``step``; ``template`` gives its structure (arrays or
        jax.ShapeDtypeStruct, e.g. ``jax.eval_shape(ippo.init, key)``)."""
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template))
        )
        return out.state

    def evaluation(self, step: int) -> CheckpointEval:
        out = self._manager.restore(step, args=ocp.args.Composite(eval=ocp.args.JsonRestore()))
        return CheckpointEval.from_dict(out.eval)

    def evaluations(self) -> list[CheckpointEval]:
        return [self.evaluation(s) for s in self.steps()]

    def close(self) -> None:
        self._manager.close()
