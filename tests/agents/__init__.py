"""The real coding-agent CLIs (Claude Code, Codex) against recording fakes of the wire APIs they speak.

- `recorder.py`: an ASGI app that records every request (method, target, headers, body) and answers by route,
  plus a proxy trap that records any attempt to leave 127.0.0.1.
- `messages_fake.py`: Anthropic Messages (`/v1/messages`, streaming and not, `count_tokens`), scripted by turn.
- `responses_fake.py`: OpenAI Responses (`/v1/responses`, streaming and not), scripted by turn.
- `harness.py`: clean environments for each CLI, a run with a bound that stops every process by PID.

What the CLIs send is written up in docs/agents-wire-notes.md; the tests here pin it.
"""
