"""Build the guest component and keep its compiled form in a cache directory.

Two steps:

1. ``componentize-py`` (which ships the CPython it embeds) turns ``guest/world.wit`` + ``guest/guest_app.py`` into a
   WebAssembly component, with every WASI import replaced by a trapping stub (``--stub-wasi``): the component's only
   import is the ``tools`` interface. A wheel carries that component (``guest/guest.wasm``, built when the wheel is
   built, with ``guest/guest.json`` naming the sources it came from), so an install needs no componentize-py; a
   checkout builds it into the cache on first use (componentize-py is in the ``dev`` extra).
2. wasmtime compiles the component for this machine and serializes it to a ``.cwasm`` file. The component is the
   same on every machine; the compiled file suits one CPU and one wasmtime, so it is made where it runs.

The file name is a key over the component, the wasmtime version, the CPU architecture and the engine configuration
(fuel on or off), so an upgrade builds afresh. A sidecar holds the SHA-256 of the ``.cwasm``: wasmtime trusts what it
deserializes, so a worker loads only a file whose digest matches what this module wrote.

``agenthub sandbox build`` (or ``python -m sandbox.build``) builds ahead of time, at install or deploy or in a
container image, and prints the artifact's path; when it cannot, it prints the cause on one line and exits 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
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
PACKAGED_COMPONENT = "guest.wasm"
PACKAGED_INFO = "guest.json"
"""Beside the guest sources in a wheel: the component, and the key of the sources it was built from."""


class GuestBuildError(RuntimeError):
    """The guest could not be built or compiled; the message names the cause and what fixes it."""


@dataclass(frozen=True, slots=True)
class GuestComponent:
    """The portable guest component: the one the package carries, or one built into the cache."""

    path: Path
    key: str
    """Identifies the component; part of the compiled artifact's key."""
    packaged: bool
    digest: str | None = None
    """SHA-256 of a packaged component, checked before it is compiled."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A compiled guest on disk, ready for workers to load."""

    path: Path
    digest: str
    fuel: bool
    built: bool
    """True when this call built it (a cold start), False when it came from the cache."""
    seconds: float
    packaged: bool = False
    """True when it was compiled from the component the package carries."""


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


def source_key(guest_dir: Path = GUEST_DIR) -> str:
    """Key of the guest sources alone."""
    digest = hashlib.sha256()
    for name in GUEST_SOURCES:
        digest.update(name.encode() + b"\0" + (guest_dir / name).read_bytes())
    return digest.hexdigest()[:20]


def guest_key(guest_dir: Path = GUEST_DIR) -> str:
    """Key of a component built here: its sources and the componentize-py version."""
    digest = hashlib.sha256(f"componentize-py {_version('componentize-py')}\n".encode())
    for name in GUEST_SOURCES:
        digest.update(name.encode() + b"\0" + (guest_dir / name).read_bytes())
    return digest.hexdigest()[:20]


def packaged_component(guest_dir: Path = GUEST_DIR) -> GuestComponent | None:
    """The component the installed package carries, if it was built from these very sources."""
    try:
        info = json.loads((guest_dir / PACKAGED_INFO).read_text())
    except (OSError, ValueError):
        return None
    path = guest_dir / PACKAGED_COMPONENT
    digest = info.get("sha256") if isinstance(info, dict) else None
    if not isinstance(digest, str) or info.get("sources") != source_key(guest_dir) or not path.is_file():
        return None
    return GuestComponent(path, f"packaged-{digest[:20]}", packaged=True, digest=digest)


def find_component(directory: Path, guest_dir: Path = GUEST_DIR) -> GuestComponent:
    """The component to compile: the packaged one, else one built into ``directory`` with componentize-py.

    Raises:
        GuestBuildError: neither is there, and componentize-py is not installed to build one.
    """
    packaged = packaged_component(guest_dir)
    if packaged is not None:
        return packaged
    key = guest_key(guest_dir)
    path = directory / f"guest-{key}.wasm"
    if not path.exists() and importlib.util.find_spec("componentize_py") is None:
        raise GuestBuildError(
            "this installation has no prebuilt guest component and componentize-py, which builds one, is not "
            "installed; install AgentHub from a wheel (pip install agenthub) or install componentize-py"
        )
    return GuestComponent(path, key, packaged=False)


def artifact_key(*, fuel: bool, component: GuestComponent | None = None) -> str:
    """Key of the compiled artifact: the component, wasmtime's version, the architecture and the engine setup."""
    component_key = component.key if component is not None else find_component(cache_dir()).key
    parts = [component_key, f"wasmtime {_version('wasmtime')}", platform.machine(), f"fuel={fuel}"]
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
    with (directory / "build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_component(output: Path, guest_dir: Path = GUEST_DIR) -> None:
    """Run componentize-py on the guest sources, writing the component to ``output``.

    Raises:
        GuestBuildError: componentize-py is missing or failed.
    """
    spec = importlib.util.find_spec("componentize_py")
    if spec is None or spec.origin is None:
        raise GuestBuildError("componentize-py, which builds the guest component, is not installed")
    output = output.absolute()  # componentize-py runs in a work directory of its own
    with tempfile.TemporaryDirectory(prefix="agenthub-guest-") as work:
        workdir = Path(work)
        (workdir / f"{GUEST_MODULE}.py").write_bytes((guest_dir / "guest_app.py").read_bytes())
        script = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
        command = [sys.executable, "-c", script, "-q", "-d", str(guest_dir / "world.wit"), "-w", WORLD]
        command += ["componentize", "--stub-wasi", "-p", str(workdir), GUEST_MODULE, "-o", str(output)]
        # Only componentize-py's own directory goes on the path (a build front end may have put it anywhere); the
        # component gets the guest module and the standard library, nothing of the caller's environment.
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["PYTHONPATH"] = str(Path(spec.origin).parent.parent)
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not output.exists():
            raise GuestBuildError(f"componentize-py failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def package_component(guest_dir: Path, sources: Path = GUEST_DIR) -> Path:
    """Build the component into ``guest_dir`` (a wheel's ``sandbox/guest``), with the key of its sources.

    Raises:
        GuestBuildError: componentize-py is missing or failed.
    """
    guest_dir.mkdir(parents=True, exist_ok=True)
    output = guest_dir / PACKAGED_COMPONENT
    build_component(output, sources)
    info = {
        "sources": source_key(sources),
        "sha256": file_digest(output),
        "builder": f"componentize-py {_version('componentize-py')}",
    }
    (guest_dir / PACKAGED_INFO).write_text(json.dumps(info, indent=1) + "\n")
    return output


def _compile(component: GuestComponent, output: Path, *, fuel: bool) -> None:
    if component.digest is not None and file_digest(component.path) != component.digest:
        raise GuestBuildError(f"{component.path} does not match its recorded digest; reinstall AgentHub")
    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    from sandbox.engine import make_engine

    try:
        compiled = Component.from_file(make_engine(fuel=fuel), str(component.path))
        data = compiled.serialize()
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


def _writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GuestBuildError(
            f"the cache directory {directory} is not writable ({reason}); set {CACHE_ENV} to a writable directory"
        ) from exc


def cached_artifact(*, fuel: bool = False, directory: Path | None = None) -> Path | None:
    """The compiled guest if the cache holds a valid one (nothing to build), else None."""
    directory = directory or cache_dir()
    try:
        path = directory / f"guest-{artifact_key(fuel=fuel, component=find_component(directory))}.cwasm"
    except GuestBuildError:
        return None
    return path if path.exists() and verified(path) else None


def ensure_artifact(*, fuel: bool = False, directory: Path | None = None, guest_dir: Path = GUEST_DIR) -> Artifact:
    """Return the compiled guest, building it first if the cache has no valid copy.

    Safe to call from several processes at once: a file lock makes one build and the others wait for it.

    Raises:
        GuestBuildError: wasmtime is missing, the cache directory is not writable, or the build or the compilation
            failed; the message says which.
    """
    started = time.perf_counter()
    if importlib.util.find_spec("wasmtime") is None:
        raise GuestBuildError("wasmtime, which runs the guest, is not installed; install it (pip install wasmtime)")
    directory = directory or cache_dir()
    component = find_component(directory, guest_dir)
    key = artifact_key(fuel=fuel, component=component)
    path = directory / f"guest-{key}.cwasm"
    if path.exists() and verified(path):
        return Artifact(path, key, fuel, False, time.perf_counter() - started, component.packaged)
    _writable(directory)
    with _lock(directory):
        if not (path.exists() and verified(path)):
            if not component.path.exists():
                tmp = directory / f"{component.path.name}.{os.getpid()}.tmp"
                build_component(tmp, guest_dir)
                os.replace(tmp, component.path)
            _compile(component, path, fuel=fuel)
            _atomic_write(path.with_suffix(".sha256"), file_digest(path).encode())
            return Artifact(path, key, fuel, True, time.perf_counter() - started, component.packaged)
    return Artifact(path, key, fuel, False, time.perf_counter() - started, component.packaged)


def main(argv: list[str] | None = None) -> int:
    """``python -m sandbox.build [--fuel]``: build (or find) the artifact and print its path, or the cause."""
    args = sys.argv[1:] if argv is None else argv
    try:
        artifact = ensure_artifact(fuel="--fuel" in args)
    except (GuestBuildError, OSError) as exc:
        sys.stderr.write(f"{' '.join(str(exc).split())}\n")
        return 1
    state = "built" if artifact.built else "cached"
    sys.stdout.write(f"{artifact.path}\t{state}\t{artifact.seconds:.2f}s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
