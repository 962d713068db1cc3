"""The body a Messages pass-through sends: the client's bytes with only the top-level `model` replaced."""

from __future__ import annotations

import orjson

from llm.messaging import MessagesRequest, outbound, replace_model


def test_only_the_top_level_model_value_changes() -> None:
    raw = b'{"tools":[{"input_schema":{"properties":{"model":{}}}}], "x": "\\"model\\": 1" ,"model" :  "a"}'
    assert replace_model(raw, "deployed") == raw.replace(b'"a"}', b'"deployed"}')


def test_an_escaped_key_is_still_the_model() -> None:
    raw = b'{"mod\\u0065l": "a", "messages": []}'
    assert replace_model(raw, "b") == b'{"mod\\u0065l": "b", "messages": []}'


def test_a_duplicate_or_non_string_model_is_not_patched_in_place() -> None:
    assert replace_model(b'{"model": "a", "model": "b"}', "c") is None
    assert replace_model(b'{"model": 5}', "c") is None
    assert replace_model(b'{"messages": []}', "c") is None


def test_a_body_that_cannot_be_patched_is_encoded_with_the_deployment_model() -> None:
    body = {"model": "b", "messages": []}
    sent = outbound(MessagesRequest(body, b'{"model": "a", "model": "b", "messages": []}'), "deployed")
    assert orjson.loads(sent) == {"model": "deployed", "messages": []}


def test_unsigned_thinking_is_stripped_and_signed_thinking_kept() -> None:
    turn = [
        {"type": "thinking", "thinking": "x", "signature": ""},
        {"type": "thinking", "thinking": "y", "signature": "s"},
        {"type": "text", "text": "t"},
    ]
    body = {"model": "a", "messages": [{"role": "assistant", "content": turn}]}
    sent = orjson.loads(outbound(MessagesRequest(body, orjson.dumps(body)), "d"))
    assert sent["messages"][0]["content"] == turn[1:] and sent["model"] == "d"


def test_a_body_already_naming_the_deployment_is_sent_as_is() -> None:
    raw = b'{ "model":"d" , "messages":[] }'
    assert outbound(MessagesRequest({"model": "d", "messages": []}, raw), "d") is raw
