"""What a running hub imports: optional features load their libraries only when they are configured or used.

Idle memory is mostly imported code, so each optional part must stay out of `sys.modules` for a hub that does
not use it, and come in when it is used: guardrail engines and RE2, OIDC login (authlib), the LLM router with its
providers and the OpenAI-compatible door, the Code Mode sandbox (with its worker pool), and the admin API. aiohttp
is never needed (both hot paths send through `http1`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

OPTIONAL = (
    "re2",
    "phonenumbers",
    "ahocorasick",
    "authlib",
    "joserfc",
    "hub.guardrails.engine",
    "aiohttp",
    "llm.router",
    "llm.providers",
    "sandbox",
    "sandbox.pool",
    "RestrictedPython",
    "hub.doors.admin.ops",
    "hub.doors.oauth",
    "hub.doors.openai",
)


def _loaded_after(code: str) -> set[str]:
    """The OPTIONAL modules in `sys.modules` after running `code` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_serving_modules_leave_optional_libraries_out() -> None:
    loaded = _loaded_after(
        """
        import hub.cli.main, hub.app, hub.http
        from hub.settings import Settings
        hub.http.build_app(Settings.model_validate({"servers": {}, "keys": []}))
        """
    )
    assert loaded == set()


def test_guardrails_load_their_engine_when_one_is_configured() -> None:
    loaded = _loaded_after(
        """
        from hub.guardrails.rules import GuardrailRules
        from hub.guardrails import GuardrailConfig
        GuardrailRules.build([GuardrailConfig(name="pii", kind="pii")])
        """
    )
    assert {"re2", "phonenumbers", "hub.guardrails.engine"} <= loaded


def test_a_regex_guardrail_is_checked_on_re2_at_load() -> None:
    loaded = _loaded_after(
        """
        from hub.guardrails import GuardrailConfig
        GuardrailConfig.model_validate({"name": "ids", "kind": "regex", "patterns": [{"name": "id", "pattern": "x+"}]})
        """
    )
    assert "re2" in loaded


def test_the_llm_router_loads_with_its_first_use() -> None:
    loaded = _loaded_after(
        """
        import llm
        llm.Router
        """
    )
    assert {"llm.router", "llm.providers"} <= loaded and "aiohttp" not in loaded


def test_code_mode_loads_the_sandbox_for_the_first_key_with_code_mode_tools() -> None:
    probe = """
        import sys
        from connectors.registry import RegistryView
        from hub.call import Principal
        from hub.executors.code import CodeMode
        from hub.governance.keys import VirtualKey
        plain = Principal(VirtualKey(id="k1", name="plain", tools=("*",)))
        coder = Principal(VirtualKey(id="k2", name="coder", tools=("*",), code_mode=True))
        codemode = CodeMode(lambda: frozenset())
        view = RegistryView()
        assert codemode.meta_tools(plain, view) == []
        assert "sandbox" not in sys.modules
        codemode.auto_approved(coder, view, "x = 1", lambda name: True)
        """
    assert "sandbox" in _loaded_after(probe)


def test_the_meta_tool_names_are_the_sandboxs() -> None:
    from hub.executors.code import META_NAMES
    from sandbox import META_TOOLS

    assert frozenset(str(tool["name"]) for tool in META_TOOLS) == META_NAMES


def test_code_mode_loads_the_pool_with_the_first_program() -> None:
    loaded = _loaded_after(
        """
        import sandbox
        sandbox.SandboxPool
        """
    )
    assert "sandbox.pool" in loaded


def test_freed_heap_memory_goes_back_to_the_system() -> None:
    probe = textwrap.dedent(
        """
        import os
        from hub.runtime.memory import release_free_memory

        def rss_kb():
            return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * 4

        blocks = [bytes(4000) for _ in range(8000)]  # about 32 MB on the heap, below the mmap threshold
        keep = bytes(4000)  # allocated above them, so the heap top is never free and glibc does not trim by itself
        del blocks
        before = rss_kb()
        released = release_free_memory()
        print(released, before - rss_kb())
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    released, freed_kb = done.stdout.split()
    assert released == "True"
    assert int(freed_kb) > 16_000, "most of the freed 32 MB was returned"


def test_the_lazily_loaded_openai_door_serves_the_paths_the_app_routes_to_it() -> None:
    from hub.doors.openai import openai_endpoints, openai_routes
    from hub.paths import OPENAI_GET_PATHS, OPENAI_POST_PATHS, OPENAI_STORED_RESPONSE_PATHS

    assert set(openai_endpoints(lambda: None)) == OPENAI_POST_PATHS  # pyright: ignore[reportArgumentType]
    routes = openai_routes(lambda: None)  # pyright: ignore[reportArgumentType]
    assert {route.path for route in routes} == OPENAI_POST_PATHS | set(OPENAI_GET_PATHS) | set(
        OPENAI_STORED_RESPONSE_PATHS
    )
