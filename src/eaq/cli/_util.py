"""Helpers for building tyro subcommand unions from {name: command class}."""

from __future__ import annotations

from typing import Annotated, Union

import tyro


def subcommand_union(commands: dict[str, type]):
    """A Union of command dataclasses, each a named subcommand with its docstring's first line."""
    members = tuple(
        Annotated[
            cls,
            tyro.conf.subcommand(
                name, prefix_name=False, description=(cls.__doc__ or "").strip().split("\n")[0]
            ),
        ]
        for name, cls in commands.items()
    )
    return Union[members]  # noqa: UP007 (built at runtime from a dict)
