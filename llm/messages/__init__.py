"""The Anthropic Messages wire format: translation to and from the Chat Completions shape the providers speak,
and reading Anthropic responses that are passed through unchanged. Pure functions and small state machines:
no I/O, no routing, no policy.

Towards a non-Anthropic deployment:

    translation = to_chat(body, reasoning=False)      # .request for the router, .dropped for a header
    message = from_chat(completion, body["model"])     # a whole response
    translator = ChatStreamTranslator(body["model"])   # a stream: feed(chunk) and close() give events,
    wire = b"".join(encode_event(e) for e in translator.feed(chunk))   # encode_event gives their SSE bytes

Towards an Anthropic deployment nothing is translated; `read_message(body)` and `MessagesStreamObserver` read
the usage (with cache reads and 5-minute / 1-hour cache writes), stop reason, text and tool input on the way.

`error_body` / `error_event` give Anthropic's error envelope and in-stream `error` event for a status, and
`estimate_input_tokens` answers `count_tokens` where Anthropic cannot be asked. Each module's docstring says
what is translated, what is dropped (and reported) and what is refused.
"""

from llm.messages.errors import ERROR_STATUS, error_body, error_event, error_type
from llm.messages.observer import MessagesStreamObserver, MessageSummary, ToolUse, read_message
from llm.messages.request import ChatTranslation, to_chat
from llm.messages.response import from_chat, usage_from_chat
from llm.messages.stream import ChatStreamTranslator, encode_event
from llm.messages.tokens import estimate_input_tokens
from llm.messages.usage import MessagesUsage

__all__ = [
    "ERROR_STATUS",
    "ChatStreamTranslator",
    "ChatTranslation",
    "MessageSummary",
    "MessagesStreamObserver",
    "MessagesUsage",
    "ToolUse",
    "encode_event",
    "error_body",
    "error_event",
    "error_type",
    "estimate_input_tokens",
    "from_chat",
    "read_message",
    "to_chat",
    "usage_from_chat",
]
