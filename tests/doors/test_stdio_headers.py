"""The stdio bridge computes a 2026-07-28 request's HTTP headers itself (importing the `mcp` SDK would cost it its
start-up time): every rule must give what the SDK's own client sends, since the hub checks them with the SDK."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from mcp.shared.inbound import (
    encode_header_value,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)

from hub.doors.stdio_headers import encode_value, header_map, modern_version, param_headers, request_headers

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}},
    {
        "type": "object",
        "properties": {
            "where": {
                "type": "object",
                "properties": {"zone": {"type": "integer", "x-mcp-header": "Zone"}, "plain": {"type": "string"}},
            },
            "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
            "list": {"type": "array", "items": {"type": "string"}},
        },
    },
    {"type": "object", "properties": {"a": {"type": "string"}}},
    {"type": "object"},
]


@given(st.text(max_size=40))
def test_header_values_are_encoded_as_the_sdk_encodes_them(value: str) -> None:
    assert encode_value(value) == encode_header_value(value)


@pytest.mark.parametrize("value", ["plain", " edge", "région", "=?base64?abc?=", "", "tab\there"])
def test_header_values_that_need_wrapping_are_wrapped_like_the_sdks(value: str) -> None:
    assert encode_value(value) == encode_header_value(value)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_annotated_arguments_are_found_where_the_sdk_finds_them(schema: dict[str, Any]) -> None:
    assert find_invalid_x_mcp_header(schema) is None
    assert header_map(schema) == x_mcp_header_map(schema)


def test_an_annotation_that_is_no_header_name_is_never_sent() -> None:
    """The hub checks no header of a tool whose annotations are invalid (SDK clients drop such tools); the bridge
    must still never build a header name the HTTP client would refuse."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "x-mcp-header": "not a token"}, "b": {"x-mcp-header": "B"}},
        "items": {"x-mcp-header": "Off-Path"},
    }
    assert find_invalid_x_mcp_header(schema) is not None
    assert header_map(schema) == {("b",): "B"}


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "region": st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans()),
            "dry": st.booleans(),
            "where": st.fixed_dictionaries({}, optional={"zone": st.integers() | st.none() | st.text(max_size=5)}),
        },
    )
)
def test_arguments_are_mirrored_into_the_headers_the_sdk_sends(arguments: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
            "where": {"type": "object", "properties": {"zone": {"type": "integer", "x-mcp-header": "Zone"}}},
        },
    }
    assert param_headers(header_map(schema), arguments) == mcp_param_headers(x_mcp_header_map(schema), arguments)


def test_a_2026_request_names_its_version_method_and_target() -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    params = {"name": "fixture__regional", "arguments": {"region": "eu"}, "_meta": meta}
    mapping = header_map({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}})
    assert modern_version(params) == "2026-07-28"
    assert modern_version({"name": "x"}) is None and modern_version(None) is None
    assert request_headers("tools/call", params, "2026-07-28", mapping) == {
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "fixture__regional",
        "Mcp-Param-Region": "eu",
    }
    assert request_headers("resources/read", {"uri": "fixture://räume"}, "2026-07-28", None) == {
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "resources/read",
        "mcp-name": encode_header_value("fixture://räume"),
    }
