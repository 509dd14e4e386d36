"""SMAX environment adapter: a static EnvSpec and pure, jit/vmap-able reset/step."""

from eaq.env.smax import (
    EnvSpec,
    SmaxEnv,
    StepOutput,
    TimeStep,
    UnknownMapError,
    available_maps,
    make_env,
)

__all__ = [
    "EnvSpec",
    "SmaxEnv",
    "StepOutput",
    "TimeStep",
    "UnknownMapError",
    "available_maps",
    "make_env",
]
