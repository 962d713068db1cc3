"""Responses API state through the hub: a stored response stays with the deployment that holds it, a conversation
survives that deployment going down, a replica continues it, and no key reaches another key's responses.

Two fake OpenAI deployments (`east`, `west`, each with its own store of responses, see
`llm.testing.fake_responses`) serve the alias `gpt`; a deployment asked to continue a response it does not hold
refuses with 400 `previous_response_not_found`, as the real service does. Everything is driven with the `openai` SDK.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from hub.store.responses import ResponseRecord, ResponseStore
from llm.testing import FakeRequest, Reply, serve
from llm.testing.fake_openai import openai_app
from llm.testing.fake_responses import ResponseArchive
from tests.doors.harness import ENV, FAST_ROUTING, OPENAI_SECRET, OPENAI_SPARE, error_of
from tests.hub.harness import ALICE, BOB, RunningHub, running_hub
from tests.tools import PATIENCE, served

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
SECRETS = {"east": OPENAI_SECRET, "west": OPENAI_SPARE}
ENV_NAMES = {"east": "T_OPENAI", "west": "T_OPENAI_SPARE"}


def said(request: FakeRequest) -> Reply:
    """The fake model repeats the last text it was given, so each turn's answer names its turn."""
    value = (request.body or {}).get("input")
    if isinstance(value, list) and value:
        last: Any = value[-1]
        content: Any = last.get("content") if isinstance(last, dict) else last
        value = content if isinstance(content, str) else content[0].get("text", "")
    return Reply(f"you said: {value}")


@dataclass
class Deployment:
    """One fake OpenAI deployment: what it was asked and answered (`requests`) and what it stored (`archive`)."""

    name: str
    requests: list[FakeRequest] = field(default_factory=list[FakeRequest])
    archive: ResponseArchive = field(default_factory=ResponseArchive)
    url: str = ""

    def __call__(self, request: FakeRequest) -> Reply:
        self.requests.append(request)
        return said(request)

    def continued(self) -> list[str]:
        """The `previous_response_id` of every request it served."""
        return [str(r.body["previous_response_id"]) for r in self.requests if "previous_response_id" in r.body]

    def provider(self) -> dict[str, Any]:
        return {
            "kind": "openai",
            "base_url": f"{self.url}/v1",
            "keys": [{"name": "main", "secret": f"env:{ENV_NAMES[self.name]}"}],
            "models": [MODEL],
        }


@contextlib.asynccontextmanager
async def deployment(name: str) -> AsyncGenerator[Deployment]:
    """A fake deployment served until the block ends."""
    made = Deployment(name)
    async with serve(openai_app(made, keys=[SECRETS[name]], archive=made.archive)) as url:
        made.url = url
        yield made


def config(east: Deployment, west: Deployment, *, weights: tuple[float, float] = (1, 1), **hub: Any) -> dict[str, Any]:
    return {
        "hub": {"upstream_start_timeout_s": 5, **hub},
        "servers": {},
        "keys": [
            {"name": "alice", "secret": ALICE, "models": ["*"]},
            {"name": "bob", "secret": BOB, "models": ["*"]},
        ],
        "providers": {"east": east.provider(), "west": west.provider()},
        "models": {
            "gpt": {
                "deployments": [
                    {"provider": "east", "model": MODEL, "weight": weights[0]},
                    {"provider": "west", "model": MODEL, "weight": weights[1]},
                ]
            }
        },
        "routing": FAST_ROUTING,
    }


_OPEN: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncGenerator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


def client(hub: RunningHub | str, key: str = ALICE) -> openai.AsyncOpenAI:
    """The SDK pointed at a hub (closed when the test ends)."""
    base = hub if isinstance(hub, str) else hub.base
    made = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=PATIENCE)
    _OPEN.append(made)
    return made


async def create(sdk: openai.AsyncOpenAI, text: str, **kwargs: Any) -> tuple[Any, str]:
    """A response and the provider that served it (`x-agenthub-provider`)."""
    model = str(kwargs.pop("model", "gpt"))
    raw = await sdk.responses.with_raw_response.create(input=text, model=model, **kwargs)
    return raw.parse(), raw.headers["x-agenthub-provider"]


def store_of(hub: RunningHub) -> ResponseStore:
    found = hub.hub.responses
    assert found is not None
    return found


# -- stickiness ----------------------------------------------------------------------------------------------------


async def test_a_continued_response_goes_to_the_deployment_that_holds_it_whatever_the_weights(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            spread = {(await create(sdk, f"hello {i}"))[1] for i in range(20)}
            assert spread == {"east", "west"}  # no previous response: weighted load balancing as usual

            first, holder = await create(sdk, "turn 0")
            other = west if holder == "east" else east
            previous = first.id
            for turn in range(1, 13):
                response, served_by = await create(sdk, f"turn {turn}", previous_response_id=previous)
                assert served_by == holder
                assert response.output_text == f"you said: turn {turn}"
                previous = response.id
            mine = east if holder == "east" else west
            assert len(mine.continued()) == 12
            assert other.continued() == [] and other.archive.refused == []


async def test_a_streamed_stored_response_is_recorded_before_its_last_event_reaches_the_client(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            alice = hub.hub.keyring.verify(ALICE)
            assert alice is not None
            async with sdk.responses.stream(model="gpt", input="streamed turn") as stream:
                seen = [  # looked up as the last event arrives, before the client reads on
                    await store_of(hub).find(event.response.id)
                    async for event in stream
                    if event.type == "response.completed"
                ]
                final = await stream.get_final_response()
            (record,) = seen
            assert record is not None and record.key_id == alice.id and record.id == final.id
            holder = record.provider
            for turn in range(1, 7):
                async with sdk.responses.stream(
                    model="gpt", input=f"streamed {turn}", previous_response_id=final.id
                ) as stream:
                    final = await stream.get_final_response()
                assert final.output_text == f"you said: streamed {turn}"
            assert len((east if holder == "east" else west).continued()) == 6
            assert (west if holder == "east" else east).archive.refused == []


async def test_store_false_records_nothing_and_cannot_be_continued(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            response, _ = await create(sdk, "stateless", store=False)
            assert await store_of(hub).find(response.id) is None
            with pytest.raises(openai.NotFoundError):
                await create(sdk, "again", previous_response_id=response.id)
            assert east.continued() == west.continued() == []


# -- the holder is down --------------------------------------------------------------------------------------------


async def test_when_the_holder_is_down_the_conversation_moves_with_the_hubs_copy(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            first, served_by = await create(sdk, "turn 0", model=f"east/{MODEL}")
            second, _ = await create(sdk, "turn 1", model=f"east/{MODEL}", previous_response_id=first.id)
            assert served_by == "east" and west.requests == []
            east.archive.down = True

            third, served_by = await create(sdk, "turn 2", previous_response_id=second.id)
            assert served_by == "west" and third.output_text == "you said: turn 2"
            (moved,) = west.requests
            assert "previous_response_id" not in moved.body
            assert moved.body["input"] == [
                    {"role": "user", "content": "turn 0"},
                    {"type": "message", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "you said: turn 0", "annotations": []}]},
                    {"role": "user", "content": "turn 1"},
                    {"type": "message", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "you said: turn 1", "annotations": []}]},
                    {"role": "user", "content": "turn 2"},
                ]  # fmt: skip

            fourth, served_by = await create(sdk, "turn 3", previous_response_id=third.id)
            assert served_by == "west" and west.continued() == [third.id]  # west holds it now
            assert fourth.output_text == "you said: turn 3"

            raw = await sdk.responses.with_raw_response.retrieve(first.id)
            assert raw.headers["x-agenthub-state"] == "hub" and raw.parse().output_text == "you said: turn 0"
            items = await sdk.responses.input_items.list(second.id)
            assert [item.model_dump()["content"][0]["text"] for item in items.data] == ["turn 1"]


async def test_without_a_copy_of_every_turn_the_conversation_does_not_move(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west, responses_max_state_bytes=0), tmp_path) as hub:
            sdk = client(hub)
            first, _ = await create(sdk, "turn 0", model=f"east/{MODEL}")
            east.archive.down = True
            with pytest.raises(openai.APIStatusError) as refused:
                await create(sdk, "turn 1", previous_response_id=first.id)
            assert refused.value.status_code == 502
            assert "no copy of the whole conversation" in str(refused.value.message)
            assert west.requests == []


# -- operations on a stored response -------------------------------------------------------------------------------


async def test_retrieve_cancel_list_and_delete_reach_the_deployment_that_holds_the_response(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            queued, holder = await create(sdk, "in the background", background=True)
            assert queued.status == "queued"
            cancelled = await sdk.responses.cancel(queued.id)
            assert cancelled.status == "cancelled"
            assert (await sdk.responses.retrieve(queued.id)).status == "cancelled"

            plain, _ = await create(sdk, [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])  # type: ignore[arg-type]
            with pytest.raises(openai.BadRequestError):
                await sdk.responses.cancel(plain.id)  # only background responses can be cancelled
            page = await sdk.responses.input_items.list(plain.id, limit=1, order="asc")
            assert [i.model_dump()["content"][0]["text"] for i in page.data] == ["one"] and page.has_more
            everything = [i.model_dump()["content"][0]["text"] async for i in sdk.responses.input_items.list(plain.id)]
            assert everything == ["two", "one"]  # newest first by default

            await sdk.responses.delete(plain.id)
            with pytest.raises(openai.NotFoundError):
                await sdk.responses.retrieve(plain.id)
            assert plain.id not in east.archive.stored and plain.id not in west.archive.stored
            assert await store_of(hub).find(plain.id) is None
            assert holder in ("east", "west")

            log = hub.hub.request_log
            assert log is not None
            await log.flush()
            rows = [r for r in hub.hub.store.recent_log(200) if r.operation.startswith("llm.response.")]
            assert sorted({r.operation for r in rows}) == [
                "llm.response.cancel", "llm.response.delete", "llm.response.get", "llm.response.items",
            ]  # fmt: skip


async def test_a_query_the_door_cannot_read_is_refused_after_the_key_is_checked(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            sdk = client(hub)
            response, _ = await create(sdk, "hello")
            with pytest.raises(openai.BadRequestError) as bad:
                await sdk.responses.input_items.list(response.id, limit=1000)
            assert "'limit'" in str(bad.value.message)
            with pytest.raises(openai.AuthenticationError):
                await client(hub, "ahk-" + "x" * 43).responses.input_items.list(response.id, limit=1000)


# -- whose responses -----------------------------------------------------------------------------------------------


async def test_another_keys_response_is_an_unknown_response(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        async with running_hub(config(east, west), tmp_path) as hub:
            alices, _ = await create(client(hub), "alice's secret plan")
            bob = client(hub, BOB)
            refusals: list[str] = []
            for attempt in (
                lambda rid: bob.responses.retrieve(rid),
                lambda rid: bob.responses.delete(rid),
                lambda rid: bob.responses.cancel(rid),
                lambda rid: bob.responses.input_items.list(rid),
                lambda rid: create(bob, "continue it", previous_response_id=rid),
            ):
                for response_id in (alices.id, "resp_nobody_has_this_one"):
                    with pytest.raises(openai.NotFoundError) as denied:
                        await attempt(response_id)
                    refusals.append(str(error_of(denied.value)["message"]).replace(response_id, "ID"))
            assert set(refusals) == {"unknown response: ID"}
            assert (await client(hub).responses.retrieve(alices.id)).id == alices.id
            assert east.continued() == west.continued() == []


# -- replicas and retention ----------------------------------------------------------------------------------------


def _toml(config: dict[str, Any]) -> str:
    """The hub configuration as TOML (tables, arrays of tables, and JSON-compatible scalars and arrays)."""
    lines: list[str] = []

    def table(prefix: str, values: dict[str, Any], header: str) -> None:
        if header:
            lines.append(header)
        nested: list[tuple[str, Any]] = []
        for key, value in values.items():
            if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
                nested.append((key, value))
            else:
                lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
        for key, value in nested:
            name = f"{prefix}{json.dumps(key)}"
            if isinstance(value, dict):
                table(f"{name}.", value, f"[{name}]")
            else:
                for entry in value:
                    table(f"{name}.", entry, f"[[{name}]]")

    table("", config, "")
    return "\n".join(lines) + "\n"


async def test_a_second_hub_process_on_the_same_database_continues_the_chain(tmp_path: Path) -> None:
    async with deployment("east") as east, deployment("west") as west:
        settings = config(east, west, weights=(1, 1000))  # without stickiness west would serve almost everything
        database = f"sqlite:///{tmp_path / 'shared.db'}"
        settings["hub"]["database"] = database
        path = tmp_path / "replica.toml"
        path.write_text(_toml({**settings, "hub": {**settings["hub"], "upstream_start_timeout_s": PATIENCE}}))
        argv = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]
        argv += ["serve", "--config", str(path), "--listen", "127.0.0.1:{port}"]
        async with running_hub(settings, tmp_path) as first:
            first_response, holder = await create(client(first), "turn 0", model=f"east/{MODEL}")
            assert holder == "east"
            async with served(argv, env=ENV) as replica:
                sdk = client(replica.base_url)
                second, served_by = await create(sdk, "turn 1", previous_response_id=first_response.id)
                assert served_by == "east" and second.output_text == "you said: turn 1"
                assert (await sdk.responses.retrieve(first_response.id)).id == first_response.id
                with pytest.raises(openai.NotFoundError):
                    await client(replica.base_url, BOB).responses.retrieve(first_response.id)
            third, served_by = await create(client(first), "turn 2", previous_response_id=second.id)
            assert served_by == "east" and third.output_text == "you said: turn 2"
            assert east.continued() == [first_response.id, second.id] and west.archive.refused == []


async def test_records_past_the_retention_are_purged(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    store = ResponseStore(engine, max_state_bytes=1 << 20)
    record = ResponseRecord("resp_old", "key_1", "east", MODEL, "main", None)
    await store.save(record, [{"role": "user", "content": "hi"}], {"id": "resp_old", "output": []})
    assert await store.purge(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.find("resp_old") == record
    assert await store.purge(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store.find("resp_old") is None
    engine.dispose()
