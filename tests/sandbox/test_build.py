"""The guest artifact: cache location, keys, integrity, and a world whose only import is `tools`."""

from __future__ import annotations

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
