"""The body a Messages pass-through sends: the client's bytes with only the top-level `model` replaced."""

from __future__ import annotations

import orjson
import pytest

from llm.messages import MessagesStreamObserver, encode_event
from llm.messaging import MessagesRequest, StreamItem, has_content, outbound, replace_model


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


QUICK_CASES = [
    b'{"model":"a","max_tokens":1,"messages":[]}',
    b'{ "messages" : [ ] ,\n\t"model"\r\n:\t "a" }',
    b'{"messages":[{"role":"user","content":"say \\"model\\" twice: \\"model\\""}],"model":"a"}',
    b'{"messages":[{"role":"user","content":"caf\\u00e9"}],"model":"a"}',
    b'{"model":"a","tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}]}',
    b'{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}],"model":"a"}',
    b'{"x":{"model":"a"},"mod\\u0065l":"a"}',
    b'{"x":{"model":"a"},"\\u006Dodel":"a"}',
    b'{"model":"a","model":"a"}',
    b'{"model":"\\u0061"}',
    b'{"text":"C:\\\\u006dore","model":"a"}',
    b'{"text":"a\\"model","model":"a"}',
    b'{"model":"a","tools":[{"input_schema":{"properties":{"model":{"enum":["x"]},"n":{"model":[1]}}}}]}',
    b'{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}],"model" : "a","x":{"model":7}}',
    b'{"messages":[{"content":[{"type":"tool_use","input":{"model":"sonnet"}}]}],"model":"a"}',
    b'{"messages":[{"content":[{"type":"tool_use","input":{"model":"a"}}]}],"model":"a"}',
    b'{"a\\"model":"b","model":"a"}',
    b'{"a\\"model":{"b":1},"model":"a"}',
    b'{"model":"a","text":"\\"model\\": \\"a\\""}',
]


@pytest.mark.parametrize("raw", QUICK_CASES)
def test_the_quick_replacement_agrees_with_the_walk(raw: bytes) -> None:
    """Knowing the parsed value allows a replacement without walking the body; it must give exactly what the walk
    gives (a body, or None where only re-encoding is safe) on bodies built to mislead it: nested `model` keys, an
    escaped top-level key, duplicate strings, escapes in the value, `"model"` inside a string (a duplicate that is
    not a string: the next test)."""
    current = orjson.loads(raw)["model"]
    assert replace_model(raw, "deployed", current if isinstance(current, str) else None) == replace_model(
        raw, "deployed"
    )


def test_the_quick_replacement_keeps_every_other_byte() -> None:
    raw = b'{ "messages" : [ ] ,\n\t"model"\r\n:\t "a" }'
    assert replace_model(raw, "deployed", "a") == b'{ "messages" : [ ] ,\n\t"model"\r\n:\t "deployed" }'


def test_a_duplicate_model_that_is_not_a_string_is_left_as_sent() -> None:
    """No model name can hide in an object, array or number: the quick way replaces the string member in place
    (where the walk would re-encode the body), and a parser that keeps the first member gets a value it refuses."""
    raw = b'{"model":{"nested":"a"},"model":"a","n":{"model":5}}'
    assert replace_model(raw, "deployed", "a") == b'{"model":{"nested":"a"},"model":"deployed","n":{"model":5}}'


def test_a_relayed_stream_item_reads_its_events_only_when_asked() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    wire = encode_event(start) + encode_event({"type": "ping"}) + encode_event(delta)
    observer = MessagesStreamObserver()
    item = StreamItem(wire, observer.split(wire))
    assert item.get("events") is None and observer.usage.input_tokens == 3
    assert item["types"] == ["message_start", "ping", "content_block_delta"] and has_content(item)
    assert item["events"] == [start, {"type": "ping"}, delta] and item["raw"] is wire
    only_start = StreamItem(wire, MessagesStreamObserver().split(encode_event(start)))
    assert not has_content(only_start)
    with pytest.raises(KeyError):
        item["usage"]
