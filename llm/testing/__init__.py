"""Fake provider servers that speak each wire format exactly, for tests here and in the hub.

    script = FakeScript(Reply("hello"), Fault.status(503), Reply(tool_calls=[ToolCall("get_time", {})]))
    async with serve(openai_app(script)) as base_url:
        ...  # point a provider's base_url at f"{base_url}/v1"

Each app takes a script: a `FakeScript` queue or any callable `FakeRequest -> Reply | Fault | Raw`, so a
test can answer depending on the conversation (Agent Mode scripts tool calls this way).
"""

from llm.testing.fake_anthropic import anthropic_app
from llm.testing.fake_bedrock import bedrock_app
from llm.testing.fake_gemini import gemini_app
from llm.testing.fake_openai import openai_app
from llm.testing.script import FakeRequest, FakeScript, Fault, Raw, Reply, Script, ToolCall
from llm.testing.server import closed_port_url, serve

__all__ = [
    "FakeRequest",
    "FakeScript",
    "Fault",
    "Raw",
    "Reply",
    "Script",
    "ToolCall",
    "anthropic_app",
    "bedrock_app",
    "closed_port_url",
    "gemini_app",
    "openai_app",
    "serve",
]
