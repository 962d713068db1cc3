"""Per-run limits of the Code Mode sandbox."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What one program run may use. Frozen; derive variants with ``dataclasses.replace``.

    Time is split: ``wall_time`` bounds the guest's own execution (epoch interruption, ~10 ms granularity) and does
    not count time spent waiting for tools; each tool call has its own ``tool_timeout`` on the host side; and
    ``total_timeout`` is a hard cap on the whole run, tools included, after which the worker is killed.

    The size caps hold on the host: the guest applies them too (so a program gets a clear error early), but whatever a
    program does to the guest, the host refuses larger frames from its worker and cuts every text it returns.
    """

    wall_time: float = 5.0
    """Seconds of guest execution, tool time excluded."""
    memory_bytes: int = 128 << 20
    """Cap on the guest's linear memory; exceeding it raises ``MemoryError`` inside the program."""
    fuel: int | None = None
    """Optional deterministic CPU budget (wasm instructions, roughly); needs a pool created with ``fuel=True``."""
    max_tool_calls: int = 100
    """Tool calls per run; further calls fail inside the program with ``ToolError``."""
    max_tool_result_bytes: int = 1 << 20
    """Size of one tool result (as JSON) handed to the program; a larger one arrives as ``ToolError``."""
    max_output_bytes: int = 64 << 10
    """What the program may print (stdout, UTF-8)."""
    max_result_bytes: int = 1 << 20
    """Size of the ``result`` value as JSON."""
    tool_timeout: float = 30.0
    """Seconds the host waits for one tool call before failing it with ``ToolError``."""
    total_timeout: float = 120.0
    """Hard cap on the whole run, tool time included; the worker is killed and replaced past it."""
    max_error_bytes: int = 8 << 10
    """Size of the error message, and separately of the traceback (UTF-8), of a failed run; longer ones are cut in
    the middle."""
    max_tool_args_bytes: int = 1 << 20
    """Size of what one tool call, or one ``call_many`` batch, sends: names and arguments as JSON (UTF-8). A larger
    call fails inside the program with ``ToolError``."""

    def __post_init__(self) -> None:
        for name in ("wall_time", "tool_timeout", "total_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in (
            "memory_bytes",
            "max_tool_result_bytes",
            "max_tool_args_bytes",
            "max_output_bytes",
            "max_result_bytes",
            "max_error_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_tool_calls < 0:
            raise ValueError("max_tool_calls must be >= 0")
        if self.fuel is not None and self.fuel <= 0:
            raise ValueError("fuel must be positive")
