"""How long a test waits for something that is bound to happen before it calls the wait a hang.

A wait in a test ends on an event (a response, a closed socket, a process that listens, a counter that moved), and
the bound around it exists only to turn a hang into a failure. On a busy 2-core machine (the suite's two workers,
a CPU-heavy process beside them, a Python process that imports the MCP SDK) a step that takes 50 ms when idle can
take tens of seconds, so every such bound is `PATIENCE`, never a figure sized for an idle machine. pytest-timeout
(pyproject.toml) stops a whole test after `TEST_TIMEOUT` seconds, beyond any test that makes progress.
"""

from __future__ import annotations

PATIENCE = 120.0
"""Seconds a single wait may take before it is a hang."""

TEST_TIMEOUT = 600
"""Seconds pytest-timeout gives one test (the `timeout` setting in pyproject.toml says the same)."""
