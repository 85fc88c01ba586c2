"""``fedlab harmonize``: harmonize one pasted object into a painting (FreePIH)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``harmonize`` to the ``fedlab`` console script."""
    from fedlab.clients.harmonization.command import add_arguments

    p = subparsers.add_parser(
        "harmonize", help="FreePIH: harmonize a pasted object into a painting"
    )
    add_arguments(p)
