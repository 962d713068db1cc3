"""The guest artifact: cache location, keys, integrity, and a world whose only import is `tools`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from wasmtime.component import Component

from sandbox import build
from sandbox.engine import TOOLS_INTERFACE, classify_trap, make_engine
from sandbox.protocol import Kind, ProtocolError, parse_header, read_frame, write_frame


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTHUB_CACHE_DIR", str(tmp_path))
    assert build.cache_dir() == tmp_path / "sandbox"
    monkeypatch.delenv("AGENTHUB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_dir() == tmp_path / "xdg" / "agenthub" / "sandbox"


def test_artifact_key_depends_on_engine_configuration() -> None:
    assert build.artifact_key(fuel=True) != build.artifact_key(fuel=False)
    assert build.artifact_key(fuel=False) == build.artifact_key(fuel=False)


def test_cached_artifact_is_reused_and_verified() -> None:
    artifact = build.ensure_artifact()
    assert not artifact.built and build.verified(artifact.path)
    assert artifact.path.parent == build.cache_dir()


def test_tampered_artifact_is_not_trusted(tmp_path: Path) -> None:
    source = build.ensure_artifact().path
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    copy.with_suffix(".sha256").write_text(build.file_digest(copy))
    assert build.verified(copy)
    with copy.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    assert not build.verified(copy)
    assert not build.verified(tmp_path / "missing.cwasm")


def test_guest_imports_only_the_tools_interface() -> None:
    engine = make_engine(fuel=False)
    component = Component.deserialize_file(engine, str(build.ensure_artifact().path))
    assert list(component.type.imports(engine)) == [TOOLS_INTERFACE]


def test_trap_classification() -> None:
    assert classify_trap("error ... Caused by: wasm trap: interrupt")[0] == "timeout"
    assert classify_trap("wasm trap: all fuel consumed by WebAssembly")[0] == "fuel"
    assert classify_trap("wasm trap: call stack exhausted")[0] == "recursion"
    assert classify_trap("wasm trap: wasm `unreachable` instruction executed")[0] == "trap"
    assert classify_trap("")[1].endswith("unknown trap")


def test_frames_round_trip_over_a_pipe() -> None:
    read_fd, write_fd = os.pipe()
    try:
        write_frame(write_fd, Kind.CALLS, b'[["a", "{}"]]')
        write_frame(write_fd, Kind.DONE, b"")
        assert read_frame(read_fd) == (Kind.CALLS, b'[["a", "{}"]]')
        assert read_frame(read_fd) == (Kind.DONE, b"")
        os.close(write_fd)
        write_fd = -1
        assert read_frame(read_fd) is None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    with pytest.raises(ProtocolError):
        parse_header(b"\x00\x00\x00\x01\x63")


def _guest_copy(tmp_path: Path, component: bytes, *, sources: str | None = None, digest: str | None = None) -> Path:
    """A guest directory as a wheel lays it out: the sources, the component and what it was built from."""
    guest = tmp_path / "guest"
    guest.mkdir()
    for name in build.GUEST_SOURCES:
        (guest / name).write_bytes((build.GUEST_DIR / name).read_bytes())
    (guest / build.PACKAGED_COMPONENT).write_bytes(component)
    info = {"sources": sources or build.source_key(guest), "sha256": digest or hashlib.sha256(component).hexdigest()}
    (guest / build.PACKAGED_INFO).write_text(json.dumps(info))
    return guest


def test_a_packaged_component_of_these_sources_is_compiled_instead_of_building_one(tmp_path: Path) -> None:
    guest = _guest_copy(tmp_path, b"\0asm component bytes")
    found = build.find_component(tmp_path / "cache", guest)
    assert found.packaged and found.path == guest / build.PACKAGED_COMPONENT
    assert build.artifact_key(fuel=False, component=found) != build.artifact_key(fuel=False)


def test_a_packaged_component_of_other_sources_is_ignored(tmp_path: Path) -> None:
    guest = _guest_copy(tmp_path, b"\0asm old", sources="0" * 20)
    assert build.packaged_component(guest) is None
    assert not build.find_component(tmp_path / "cache", guest).packaged  # built here instead (dev extra)


def test_a_packaged_component_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    guest = _guest_copy(tmp_path, b"\0asm tampered", digest="f" * 64)
    with pytest.raises(build.GuestBuildError, match="does not match its recorded digest; reinstall AgentHub"):
        build.ensure_artifact(directory=tmp_path / "cache", guest_dir=guest)
