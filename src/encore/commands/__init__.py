"""Sub-commands of the ``encore`` CLI, one module per area (see ``encore.cli``)."""

from __future__ import annotations

import argparse


def command_group(
    subparsers: argparse._SubParsersAction, name: str, help: str
) -> argparse._SubParsersAction:
    """Add the command ``name`` whose own sub-commands (``WHAT``) go on the group returned;
    ``encore NAME`` alone prints the command's help and exits 1."""
    parser = subparsers.add_parser(name, help=help)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="WHAT")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 1)[1])
    return group
