"""Anthropic's error types and envelope, for the hub's statuses and codes."""

from __future__ import annotations

import anthropic
import pytest

from llm.messages import ERROR_STATUS, error_body, error_type


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (200, "api_error"),
    ],
)
def test_each_status_has_anthropics_error_type(status: int, expected: str) -> None:
    assert error_type(status) == expected


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (502, "overloaded_error", "overloaded_error"),  # an Anthropic upstream's own type, behind the hub's 502
        (413, "invalid_request_error", "request_too_large"),  # the hub's generic 4xx code does not hide the status
        (402, "insufficient_quota", "billing_error"),
        (502, "upstream_error", "api_error"),
        (504, "timeout_error", "timeout_error"),
        (403, "upstream_authorization_required", "permission_error"),
        (405, "method_not_allowed", "invalid_request_error"),
        (500, "internal_error", "api_error"),
        (429, "something_else", "rate_limit_error"),
    ],
)
def test_a_code_refines_the_status(status: int, code: str, expected: str) -> None:
    assert error_type(status, code) == expected


def test_every_type_round_trips_through_its_status() -> None:
    assert all(error_type(status) == kind for kind, status in ERROR_STATUS.items())


def test_the_envelope_is_anthropics_and_the_sdk_reads_it() -> None:
    body = error_body(429, "slow down", request_id="req_011CSHoEeqs5C35K2UUqR7Fy")
    assert body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    parsed = anthropic.types.ErrorResponse.model_validate(error_body(529, "Overloaded"))
    assert parsed.error.type == "overloaded_error" and parsed.error.message == "Overloaded"
