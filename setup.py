"""Build hook: a wheel carries the Code Mode guest component, so an install needs no componentize-py.

Everything else about the package is declared in ``pyproject.toml``. Building a wheel runs componentize-py (a build
requirement) on ``sandbox/guest`` and writes ``guest.wasm`` and ``guest.json`` beside the guest sources in the
wheel; the component is portable, and each machine compiles it for itself at first start (``sandbox/build.py``).
An editable install builds nothing here: a checkout builds the component at first use with the ``dev`` extra.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithGuest(build_py):
    """``build_py``, then the guest component into the build tree."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        # sandbox/build.py needs only the standard library; loaded alone, so the build needs none of our dependencies
        spec = importlib.util.spec_from_file_location("_agenthub_guest_build", ROOT / "sandbox" / "build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        target = Path(self.build_lib).absolute() / "sandbox" / "guest"
        self.announce(f"building the Code Mode guest component into {target}", level=2)
        module.package_component(target, ROOT / "sandbox" / "guest")


setup(cmdclass={"build_py": BuildPyWithGuest})
