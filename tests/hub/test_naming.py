"""Exposed names: `server__tool`, at most 64 characters of [A-Za-z0-9_-], stable and collision-free."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mcp_types as types
import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from connectors.config import SERVER_NAME, StdioConfig
from connectors.naming import MAX_NAME, exposed_name
from connectors.registry import build_view
from connectors.upstream import Catalog
from hub.cli.main import main
from hub.governance.filters import GlobSet
from hub.settings import ConfigError, load_settings

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_short_names_are_prefixed_unchanged() -> None:
    assert exposed_name("time", "get_current_time") == "time__get_current_time"
    assert exposed_name("everything", "get-sum") == "everything__get-sum"


def test_long_names_are_shortened_with_a_stable_hash_suffix() -> None:
    long = "a" * 80
    name = exposed_name("server", long)
    assert len(name) == MAX_NAME and VALID.match(name)
    assert name == exposed_name("server", long)
    assert name != exposed_name("server", "a" * 81)


def test_characters_outside_the_alphabet_are_replaced_and_disambiguated() -> None:
    dotted = exposed_name("s", "files.read")
    underscored = exposed_name("s", "files_read")
    assert VALID.match(dotted) and dotted != underscored


@given(st.text(min_size=1, max_size=200))
def test_every_exposed_name_is_valid_and_distinct_inputs_stay_distinct(tool: str) -> None:
    name = exposed_name("srv", tool)
    assert VALID.match(name)
    if tool != "x":
        assert name != exposed_name("srv", "x")


# -- server names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fx_", "a__b", "_x", "-x", "x" * 33, "a.b", ""])
def test_a_server_name_outside_the_grammar_is_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        StdioConfig(name=name or "x" * 40, command="true")


@pytest.mark.parametrize("name", ["fx", "f_x", "f-x", "fx-", "a1_b-c", "x" * 32])
def test_a_server_name_inside_the_grammar_is_accepted(name: str) -> None:
    assert StdioConfig(name=name, command="true").name == name


@given(st.from_regex(SERVER_NAME, fullmatch=True), st.from_regex(SERVER_NAME, fullmatch=True), st.text(min_size=1))
def test_a_glob_over_one_servers_prefix_never_matches_another_servers_tool(server: str, other: str, tool: str) -> None:
    """With the grammar, `server__*` selects exactly the names `server` exposes (a server `fx_` would expose
    `fx___tool`, which `fx__*` matches)."""
    if other == server:
        return
    assert not GlobSet([f"{server}__*"]).matches(exposed_name(other, tool))


@pytest.mark.parametrize(("first", "second"), [("GitHub", "github"), ("my-tools", "my_tools"), ("A-b", "a_B")])
def test_config_check_refuses_colliding_server_names(tmp_path: Path, first: str, second: str) -> None:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f'[servers.{first}]\ntransport = "stdio"\ncommand = "a"\n'
        f'[servers.{second}]\ntransport = "stdio"\ncommand = "b"\n',
        encoding="utf-8",
    )
    assert main(["config", "check", str(config)]) != 0
    with pytest.raises(ConfigError, match=f"servers '{first}' and '{second}' collide"):
        load_settings(config)


@dataclass
class _Upstream:
    name: str
    catalog: Catalog


def test_a_resource_whose_exposed_uri_is_taken_is_left_out_never_swapped_in() -> None:
    """A URI two servers offer is exposed as `server+uri` for the later one; when that spelling is another server's
    own URI, the later resource is left out, so an exposed URI always reads what it read before."""

    def resource(uri: str) -> types.Resource:
        return types.Resource(uri=uri, name=uri)

    alpha = _Upstream("alpha", Catalog(resources=(resource("x://1"), resource("beta+x://1"))))
    beta = _Upstream("beta", Catalog(resources=(resource("x://1"), resource("x://2"))))
    view = build_view([beta, alpha], 1)  # type: ignore[list-item]
    assert {uri: (e.server, e.original) for uri, e in view.resources.items()} == {
        "x://1": ("alpha", "x://1"),
        "beta+x://1": ("alpha", "beta+x://1"),
        "x://2": ("beta", "x://2"),
    }
