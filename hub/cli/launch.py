"""The `agenthub` command: `agenthub serve` runs under `-OO` (see `hub.runtime.memory.run_without_docstrings`), every
command is then handled by `hub.cli.main`. This module imports next to nothing, so the switch costs no start-up time."""

from __future__ import annotations

import sys

from hub.runtime.memory import run_without_docstrings


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        run_without_docstrings(sys.argv[1:])  # a long-running hub: about 5 MiB less memory
    from hub.cli.main import main as cli_main

    return cli_main()
