from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())
