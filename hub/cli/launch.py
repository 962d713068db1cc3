"""The `agenthub` command: `agenthub serve` runs under `-OO` (see `hub.runtime.memory.run_without_docstrings`);
`agenthub stdio` goes to `hub.cli.stdio` first, so the bridge to a running hub starts without importing the rest of
the hub (MCP clients that launch it wait only a few seconds for its first answer); every command is then handled by
`hub.cli.main`. This module imports next to nothing, so the switch costs no start-up time."""

from __future__ import annotations

import sys

from hub.runtime.memory import run_without_docstrings


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        run_without_docstrings(sys.argv[1:])  # a long-running hub: about 5 MiB less memory
    if sys.argv[1:2] == ["stdio"]:
        from hub.cli.stdio import main as stdio_main

        status = stdio_main(sys.argv[2:])
        if status is not None:
            return status  # the bridge ran; anything else is for the whole command line
    from hub.cli.main import main as cli_main

    return cli_main()
