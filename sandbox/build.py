"""Build the guest component and keep its compiled form in a cache directory.

Two steps, both offline and from PyPI packages only:

1. ``componentize-py`` (which ships the CPython it embeds) turns ``guest/world.wit`` + ``guest/guest_app.py`` into a
   WebAssembly component, with every WASI import replaced by a trapping stub (``--stub-wasi``): the component's only
   import is the ``tools`` interface.
2. wasmtime compiles the component for this machine and serializes it to a ``.cwasm`` file.

The file name is a key over the guest sources, the componentize-py and wasmtime versions, the CPU architecture and the
engine configuration (fuel on or off), so an upgrade builds afresh. A sidecar holds the SHA-256 of the ``.cwasm``:
wasmtime trusts what it deserializes, so a worker loads only a file whose digest matches what this module wrote.

Run ``python -m sandbox.build`` to build ahead of time (at install or deploy), which prints the artifact's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

GUEST_DIR = Path(__file__).parent / "guest"
GUEST_SOURCES = ("world.wit", "guest_app.py")
GUEST_MODULE = "guest_app"
WORLD = "guest"
CACHE_ENV = "AGENTHUB_CACHE_DIR"


class GuestBuildError(RuntimeError):
    """The guest component could not be built or compiled."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A compiled guest on disk, ready for workers to load."""

    path: Path
    digest: str
    fuel: bool
    built: bool
    """True when this call built it (a cold start), False when it came from the cache."""
    seconds: float


def cache_dir() -> Path:
    """``$AGENTHUB_CACHE_DIR/sandbox``, else ``$XDG_CACHE_HOME/agenthub/sandbox``, else ``~/.cache/agenthub/...``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "sandbox"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "agenthub" / "sandbox"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def guest_key() -> str:
    """Key of the guest component: its sources and the componentize-py version."""
    digest = hashlib.sha256(f"componentize-py {_version('componentize-py')}\n".encode())
    for name in GUEST_SOURCES:
        digest.update(name.encode() + b"\0" + (GUEST_DIR / name).read_bytes())
    return digest.hexdigest()[:20]


def artifact_key(*, fuel: bool) -> str:
    """Key of the compiled artifact: guest key, wasmtime version, architecture and engine configuration."""
    parts = [guest_key(), f"wasmtime {_version('wasmtime')}", platform.machine(), f"fuel={fuel}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def file_digest(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path) -> bool:
    """True if ``path`` is a ``.cwasm`` this module wrote (its sidecar digest matches)."""
    sidecar = path.with_suffix(".sha256")
    try:
        return sidecar.read_text().strip() == file_digest(path)
    except OSError:
        return False


@contextlib.contextmanager
def _lock(directory: Path) -> Generator[None, None, None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_component(output: Path) -> None:
    """Run componentize-py on the guest sources, writing the component to ``output``."""
    with tempfile.TemporaryDirectory(prefix="agenthub-guest-") as work:
        workdir = Path(work)
        (workdir / f"{GUEST_MODULE}.py").write_bytes((GUEST_DIR / "guest_app.py").read_bytes())
        script = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
        command = [sys.executable, "-c", script, "-q", "-d", str(GUEST_DIR / "world.wit"), "-w", WORLD]
        command += ["componentize", "--stub-wasi", "-p", str(workdir), GUEST_MODULE, "-o", str(output)]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not output.exists():
            raise GuestBuildError(f"componentize-py failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _compile(component_path: Path, output: Path, *, fuel: bool) -> None:
    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    from sandbox.engine import make_engine

    try:
        component = Component.from_file(make_engine(fuel=fuel), str(component_path))
        data = component.serialize()
    except WasmtimeError as exc:
        raise GuestBuildError(f"wasmtime could not compile the guest: {exc}") from exc
    _atomic_write(output, bytes(data))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_artifact(*, fuel: bool = False, directory: Path | None = None) -> Artifact:
    """Return the compiled guest, building it first if the cache has no valid copy.

    Safe to call from several processes at once: a file lock makes one build and the others wait for it.

    Raises:
        GuestBuildError: componentize-py or wasmtime failed.
    """
    started = time.perf_counter()
    directory = directory or cache_dir()
    key = artifact_key(fuel=fuel)
    path = directory / f"guest-{key}.cwasm"
    if path.exists() and verified(path):
        return Artifact(path, key, fuel, built=False, seconds=time.perf_counter() - started)
    with _lock(directory):
        if not (path.exists() and verified(path)):
            component = directory / f"guest-{guest_key()}.wasm"
            if not component.exists():
                tmp = directory / f"{component.name}.{os.getpid()}.tmp"
                build_component(tmp)
                os.replace(tmp, component)
            _compile(component, path, fuel=fuel)
            _atomic_write(path.with_suffix(".sha256"), file_digest(path).encode())
            return Artifact(path, key, fuel, built=True, seconds=time.perf_counter() - started)
    return Artifact(path, key, fuel, built=False, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """``python -m sandbox.build [--fuel]``: build (or find) the artifact and print its path."""
    args = sys.argv[1:] if argv is None else argv
    artifact = ensure_artifact(fuel="--fuel" in args)
    state = "built" if artifact.built else "cached"
    sys.stdout.write(f"{artifact.path}\t{state}\t{artifact.seconds:.2f}s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
