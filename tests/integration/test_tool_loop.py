"""The tool loop inside the reply job, with real peers: the fake Groq server through the real SDK asks for
the calls ("call <tool> <json>" in the question), a real MCP server on loopback answers them, and every
call is stored and shown through the reply's log. Both databases."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.actions import Caller
from chatbot_app.services.attachments import AttachmentLimits, prepare_attachment
from chatbot_app.services.chat_service import ChatService, ConversationNotFound, Turn
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.refusals import Refused
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult, apply
from chatbot_app.services.reply_log import MemoryReplyLog, ReplyEvent, ToolUpdate
from chatbot_app.services.shares import ShareLinks
from chatbot_app.storage import conversations
from chatbot_app.storage.models import Message, MessageStatus, ToolCallRecord
from chatbot_app.storage.transfer import ImportRejected, exported_ids, import_conversations, parse_import, stream_json
from tests.conftest import make_service, make_services
from tests.fakes.fake_llm_server import COMPOUND_MODELS, Behaviour, FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer

OWNER = "owner-" + "t" * 20
STRANGER = "owner-" + "s" * 20
BOUND_S = 60
#: A long document: cut to fit the context, its end is found only through search_files.
BOOK = ("filler " * 6000 + "The blue whale's heart weighs about 180 kilograms. ").encode()


@pytest.fixture
def tool_settings(settings: Settings, mcp_fake: FakeMcpServer) -> Settings:
    servers = [{"name": "facts", "url": mcp_fake.url, "default_on": True}]
    return settings.model_copy(
        update={
            "tool_models": ("fake-large",),
            "mcp_servers": json.dumps(servers),
            "mcp_allow_private": True,
            "context_budget_tokens": 2_000,
        }
    )


@pytest.fixture
def service(tool_settings: Settings, engine: Engine) -> ChatService:
    return make_service(tool_settings, engine)


@pytest.fixture
async def jobs(service: ChatService) -> AsyncIterator[ReplyJobs]:
    jobs = ReplyJobs(service, MemoryReplyLog())
    yield jobs
    await jobs.aclose()


async def followed(jobs: ReplyJobs, turn: Turn) -> tuple[ReplyResult, list[ReplyEvent]]:
    """Start the reply's job and follow it to its end."""
    await jobs.start(turn)
    return await followed_to_end(jobs, turn)


def stored_calls(engine: Engine, reply_id: int) -> list[ToolCallRecord]:
    with Session(engine) as session:
        query = select(ToolCallRecord).where(ToolCallRecord.reply_id == reply_id).order_by(ToolCallRecord.id)
        return list(session.exec(query).all())


def tool_messages(fake: FakeLLMServer, request: int = -1) -> list[dict]:
    return [m for m in fake.chat_requests()[request].body["messages"] if m["role"] == "tool"]


async def wait_for_status(jobs: ReplyJobs, reply_id: int, status: str) -> ToolUpdate:
    """The first update of the reply's calls with `status`, as a follower sees it."""
    async with asyncio.timeout(BOUND_S):
        async for _, batch in jobs.follow(reply_id):
            for event in batch:
                if isinstance(event, ToolUpdate) and event.status == status:
                    return event
    raise AssertionError(f"no call reached {status}")


async def test_search_files_finds_what_was_cut_from_a_long_document(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    book = prepare_attachment("book.txt", BOOK, AttachmentLimits())
    first = await service.start_turn(OWNER, None, "Summarize this", attachments=[book])
    await followed(jobs, first)
    assert "blue whale" not in fake.chat_requests()[-1].body["messages"][-1]["content"]  # cut to fit

    question = 'How heavy is its heart? call search_files {"query": "blue whale heart"}'
    turn = await service.start_turn(OWNER, first.conversation_id, question)
    result, events = await followed(jobs, turn)

    assert result.finished is not None and result.finished.status == MessageStatus.COMPLETE
    assert "180 kilograms" in result.text  # the fake quotes the tool's answer
    [answer] = tool_messages(fake)
    assert "book.txt" in answer["content"] and "180 kilograms" in answer["content"]
    statuses = [e.status for e in events if isinstance(e, ToolUpdate)]
    assert statuses == ["running", "done"]
    [call] = stored_calls(engine, turn.reply_id)
    assert (call.name, call.status, call.server) == ("search_files", "done", "")
    assert json.loads(call.arguments) == {"query": "blue whale heart"} and "180 kilograms" in call.result


async def test_search_files_finds_a_file_of_a_branch_whose_original_conversation_was_deleted(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    book = prepare_attachment("book.txt", BOOK, AttachmentLimits())
    first = await service.start_turn(OWNER, None, "Keep this", attachments=[book])
    await followed(jobs, first)
    branch = await service.fork(OWNER, first.conversation_id, first.reply_id)
    with Session(engine) as session:
        original = conversations.get_conversation(session, first.conversation_id, OWNER)
        assert original is not None
        conversations.delete_conversation(session, original)
        session.commit()

    turn = await service.start_turn(OWNER, branch.conversation_id, 'call search_files {"query": "blue whale heart"}')
    await followed(jobs, turn)

    [answer] = tool_messages(fake)
    assert "book.txt" in answer["content"] and "180 kilograms" in answer["content"]


async def test_search_files_reads_only_its_owners_files(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    book = prepare_attachment("book.txt", BOOK, AttachmentLimits())
    await followed(jobs, await service.start_turn(STRANGER, None, "Keep this", attachments=[book]))

    turn = await service.start_turn(OWNER, None, 'call search_files {"query": "blue whale"}')
    await followed(jobs, turn)

    [answer] = tool_messages(fake)
    assert "180 kilograms" not in answer["content"] and "No passage" in answer["content"]


async def test_two_calls_in_one_turn_run_and_both_answers_reach_the_model_in_order(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, mcp_fake: FakeMcpServer, engine: Engine
) -> None:
    question = 'call facts__lookup {"key": "capital-of-france"}\ncall search_files {"query": "nothing here"}'
    turn = await service.start_turn(OWNER, None, question)
    result, _ = await followed(jobs, turn)

    offered = {tool.get("function", {}).get("name") for tool in fake.chat_requests()[0].body["tools"]}
    assert {"search_files", "facts__lookup", "facts__write_note"} <= offered
    answers = tool_messages(fake)
    assert [a["content"][:5] for a in answers] == ["Paris", "No pa"]
    calls = sorted(stored_calls(engine, turn.reply_id), key=lambda c: c.call_id)  # they run at once
    assert [(c.name, c.server, c.status) for c in calls] == [
        ("facts__lookup", "facts", "done"),
        ("search_files", "", "done"),
    ]
    assert "Paris" in result.text


async def test_the_loop_stops_after_the_last_round_which_offers_no_tools(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(tool_settings.model_copy(update={"max_tool_rounds": 2}), engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    calls = [("search_files", '{"query": "anything"}')]
    fake.enqueue_stream(Behaviour(tool_calls=calls), Behaviour(tool_calls=calls), Behaviour(tool_calls=calls))
    try:
        result, _ = await followed(jobs, await service.start_turn(OWNER, None, "Keep looking"))
    finally:
        await jobs.aclose()

    assert len(fake.chat_requests()) == 3
    assert "tools" in fake.chat_requests()[1].body and "tools" not in fake.chat_requests()[2].body
    assert result.finished is not None and result.finished.status == MessageStatus.COMPLETE


async def test_every_round_counts_in_the_replys_usage(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, 'call search_files {"query": "x"}')
    result, _ = await followed(jobs, turn)

    reported = list(fake.reported_usage.values())  # what each call of the model said it used
    assert len(reported) == 2
    assert result.finished is not None
    assert result.finished.prompt_tokens == sum(usage["prompt_tokens"] for usage in reported)
    assert result.finished.completion_tokens == sum(usage["completion_tokens"] for usage in reported)


async def test_a_tool_that_is_not_read_only_waits_for_approval_and_runs_once_approved(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, mcp_fake: FakeMcpServer, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, 'call facts__write_note {"text": "buy milk"}')
    await jobs.start(turn)
    waiting = await wait_for_status(jobs, turn.reply_id, "awaiting-approval")
    assert mcp_fake.notes == []  # nothing ran before the answer

    assert not await service.answer_tool_call(STRANGER, turn.reply_id, waiting.call_id, True)  # not theirs
    assert await service.answer_tool_call(OWNER, turn.reply_id, waiting.call_id, True)
    jobs.tools.answered(turn.reply_id, waiting.call_id)
    result, _ = await followed_to_end(jobs, turn)

    assert mcp_fake.notes == ["buy milk"]
    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "done" and "Noted" in call.result
    assert result.finished is not None and result.finished.status == MessageStatus.COMPLETE


async def test_a_denied_call_does_not_run_and_the_model_is_told(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, mcp_fake: FakeMcpServer, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, 'call facts__write_note {"text": "sell milk"}')
    await jobs.start(turn)
    waiting = await wait_for_status(jobs, turn.reply_id, "awaiting-approval")
    # Answered as another backend would: only the row changes; the job reads it.
    assert await service.answer_tool_call(OWNER, turn.reply_id, waiting.call_id, False)
    await followed_to_end(jobs, turn)

    assert mcp_fake.notes == []
    [answer] = tool_messages(fake)
    assert "denied" in answer["content"]
    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "denied"


async def test_an_unanswered_call_counts_as_denied_after_the_wait(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    service = make_service(tool_settings.model_copy(update={"tool_approval_s": 1.0}), engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    try:
        turn = await service.start_turn(OWNER, None, 'call facts__write_note {"text": "later"}')
        await followed(jobs, turn)
    finally:
        await jobs.aclose()

    assert mcp_fake.notes == []
    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "denied" and "did not approve" in (call.error or "")


async def test_stop_during_a_slow_tool_ends_the_reply_stopped_with_the_call_stopped(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, 'call facts__slow {"seconds": 30}')
    await jobs.start(turn)
    await wait_for_status(jobs, turn.reply_id, "running")
    await jobs.stop(turn.reply_id)
    result, _ = await followed_to_end(jobs, turn)

    assert result.finished is not None and result.finished.status == MessageStatus.STOPPED
    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "error" and call.error == "Stopped by the user."
    assert len(fake.chat_requests()) == 1  # the model was not called again


async def test_a_server_that_fails_gives_an_error_result_and_the_reply_completes(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, mcp_fake: FakeMcpServer, engine: Engine
) -> None:
    await followed(jobs, await service.start_turn(OWNER, None, "Hello"))  # its tools are listed (and kept)
    mcp_fake.stop()
    turn = await service.start_turn(OWNER, None, 'call facts__lookup {"key": "capital-of-france"}')
    result, _ = await followed(jobs, turn)

    assert result.finished is not None and result.finished.status == MessageStatus.COMPLETE
    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "error" and call.error
    [answer] = tool_messages(fake)
    assert answer["content"] == call.error


async def test_a_huge_result_is_cut_and_says_so(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, "call facts__huge {}")
    await followed(jobs, turn)

    [answer] = tool_messages(fake)
    assert "The result was cut here" in answer["content"]
    assert len(answer["content"]) < 2_000 * 4 + 500  # within what the context budget leaves


async def test_a_model_that_does_not_call_tools_is_offered_none(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    chat = ChatSettings(provider="groq", model="fake-small", web_search=True)
    await followed(jobs, await service.start_turn(OWNER, None, 'call search_files {"query": "x"}', chat))

    assert "tools" not in fake.chat_requests()[0].body
    availability = service.tools.availability("groq", "fake-small")
    assert not availability.functions and not availability.web_search
    assert "fake-small does not call tools" in availability.reason and "fake-large" in availability.reason


def test_the_reason_names_three_models_that_call_tools_and_counts_the_rest(settings: Settings, engine: Engine) -> None:
    models = ("m1", "m2", "m3", "m4", "m5")
    service = make_service(settings.model_copy(update=dict(tool_models=models)), engine)

    reason = service.tools.availability("groq", "fake-small").reason

    assert reason == "fake-small does not call tools. Models that do: m1, m2, m3 and 2 more."


async def test_web_search_gives_a_groq_model_that_has_it_browser_search(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    settings = tool_settings.model_copy(update={"browser_search_models": ("fake-large",)})
    service = make_service(settings, engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    try:
        await followed(jobs, await service.start_turn(OWNER, None, "News?", ChatSettings(web_search=True)))
        await followed(jobs, await service.start_turn(OWNER, None, "News?", ChatSettings(web_search=False)))
    finally:
        await jobs.aclose()

    on, off = (request.body["tools"] for request in fake.chat_requests())
    assert {"type": "browser_search"} in on and {"type": "browser_search"} not in off


async def test_what_a_compound_model_ran_is_stored_as_tool_calls_with_their_sources(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    fake.compound_models = COMPOUND_MODELS
    chat = ChatSettings(provider="groq", model="groq/compound", web_search=True)
    turn = await service.start_turn(OWNER, None, "What happened today?", chat)
    result, _ = await followed(jobs, turn)

    [call] = stored_calls(engine, turn.reply_id)
    assert (call.server, call.status) == ("groq", "done")
    assert result.tools and all(update.sources for update in result.tools.values())
    tool_calls = await service.tool_calls(OWNER, turn.conversation_id, [turn.reply_id])
    assert tool_calls[turn.reply_id][0].sources == next(iter(result.tools.values())).sources


async def test_a_compound_model_searches_the_web_only_with_web_search_on(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    fake.compound_models = COMPOUND_MODELS
    off, on = (ChatSettings(provider="groq", model="groq/compound", web_search=web) for web in (False, True))
    quiet = await service.start_turn(OWNER, None, "What happened today?", off)
    quiet_result, _ = await followed(jobs, quiet)
    searched = await service.start_turn(OWNER, None, "What happened today?", on)
    searched_result, _ = await followed(jobs, searched)

    without, with_web = (request.body for request in fake.streamed_requests())
    assert without["compound_custom"] == {"tools": {"enabled_tools": ["code_interpreter"]}}
    assert "compound_custom" not in with_web  # Groq's default: the web included
    assert stored_calls(engine, quiet.reply_id) == [] and not quiet_result.tools
    [call] = stored_calls(engine, searched.reply_id)
    assert call.status == "done" and all(update.sources for update in searched_result.tools.values())


async def test_a_model_the_providers_list_says_calls_tools_is_offered_them(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    fake.model_fields = {"fake-small": {"supported_parameters": ["temperature", "tools"]}}
    assert "fake-small" not in service.settings.tool_models
    await service.model_menu()  # the page lists the models first: their entries are read then

    chat = ChatSettings(provider="groq", model="fake-small")
    question = 'call facts__lookup {"key": "capital-of-france"}'
    await followed(jobs, await service.start_turn(OWNER, None, question, chat))

    asked, answered = (request.body for request in fake.streamed_requests()[:2])
    assert "search_files" in [tool["function"]["name"] for tool in asked["tools"]]
    [answer] = [m for m in answered["messages"] if m["role"] == "tool"]
    assert "Paris" in answer["content"] and answered["model"] == "fake-small"
    availability = service.tools.availability("groq", "fake-small")
    assert availability.functions and availability.reason.startswith("fake-small has no web search")


async def test_a_provider_whose_list_can_say_is_read_before_a_reply_decides(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    """A process that never showed the picker (restarted, or the one a moved tab's reply runs on) decides as
    the others do: an OpenAI-compatible server's list is read (cached) before the tools are chosen."""
    fake.model_fields = {"fake-small": {"supported_parameters": ["tools"]}}
    openai = {"openai_base_url": fake.openai_base_url, "openai_api_key": "sk-test-" + "x" * 20}
    service = make_service(tool_settings.model_copy(update=openai), engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    try:
        chat = ChatSettings(provider="openai", model="fake-small")
        await followed(jobs, await service.start_turn(OWNER, None, "Hello", chat))
    finally:
        await jobs.aclose()

    asked = fake.streamed_requests()[0].body
    assert asked["model"] == "fake-small" and "search_files" in [t["function"]["name"] for t in asked["tools"]]


@pytest.mark.parametrize("fields", [{}, {"capabilities": "tools"}, {"supported_parameters": {"tools": True}}])
async def test_a_model_whose_list_entry_does_not_say_it_calls_tools_gets_none(
    service: ChatService, fake: FakeLLMServer, fields: dict[str, object]
) -> None:
    fake.model_fields = {"fake-small": fields}
    await service.model_menu()

    toolbox = await service.tools.toolbox(OWNER, "groq", "fake-small", web_search=False, mcp_servers=None)

    assert not toolbox and not service.tools.availability("groq", "fake-small").functions
    assert "fake-small does not call tools" in service.tools.availability("groq", "fake-small").reason


async def test_another_user_can_neither_read_nor_answer_a_tool_call(
    tool_settings: Settings, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    built = make_services(tool_settings)
    try:
        turn = await built.chat.start_turn(OWNER, None, 'call facts__write_note {"text": "mine"}')
        await built.replies.start(turn)
        waiting = await wait_for_status(built.replies, turn.reply_id, "awaiting-approval")

        with pytest.raises(Refused, match="not waiting"):
            await built.actions.answer_tool_call(Caller(STRANGER, None), turn.reply_id, waiting.call_id, True)
        with pytest.raises(ConversationNotFound):
            await built.chat.tool_calls(STRANGER, turn.conversation_id, [turn.reply_id])
        for bad in ((turn.reply_id, waiting.call_id, "yes"), (turn.reply_id, 7, True), ("x", waiting.call_id, True)):
            with pytest.raises(Refused):
                await built.actions.answer_tool_call(Caller(OWNER, None), *bad)

        await built.actions.answer_tool_call(Caller(OWNER, None), turn.reply_id, waiting.call_id, False)
        await followed_to_end(built.replies, turn)
        assert mcp_fake.notes == []
    finally:
        await built.replies.aclose()


async def test_a_reply_whose_process_died_ends_its_running_calls(service: ChatService, engine: Engine) -> None:
    turn = await service.start_turn(OWNER, None, "call facts__slow {}")
    with Session(engine) as session:
        session.add(ToolCallRecord(reply_id=turn.reply_id, call_id="c1", name="facts__slow", status="running"))
        session.commit()

    assert await service.interrupt_reply(turn.reply_id, "partial")

    [call] = stored_calls(engine, turn.reply_id)
    assert call.status == "error" and "interrupted" in (call.error or "")
    with Session(engine) as session:
        assert session.get(Message, turn.reply_id).status == MessageStatus.INTERRUPTED  # type: ignore[union-attr]


async def followed_to_end(jobs: ReplyJobs, turn: Turn) -> tuple[ReplyResult, list[ReplyEvent]]:
    """Follow a started reply from its start to its end."""
    events: list[ReplyEvent] = []
    async with asyncio.timeout(BOUND_S):
        async for _, batch in jobs.follow(turn.reply_id):
            events += batch
    result = ReplyResult()
    apply(result, events)
    return result, events


async def test_admins_add_change_and_remove_servers_and_see_tool_calls_per_user(
    tool_settings: Settings, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    built = make_services(tool_settings)
    try:
        admin, _ = await built.accounts.operator_create_admin("root@example.com")
        user, _ = await built.accounts.create_user(admin.id, "user@example.com")  # type: ignore[arg-type]
        form = {"name": "notes", "url": mcp_fake.url, "headers": '{"Authorization": "MCP_NOTES_KEY"}', "trusted": "on"}
        await built.actions.add_mcp_server(admin.id, form)  # type: ignore[arg-type]

        added = {s.name: s for s in await built.chat.tools.servers()}["notes"]
        assert (added.headers, added.trusted, added.default_on, added.enabled) == (
            {"Authorization": "MCP_NOTES_KEY"},
            True,
            False,
            True,
        )
        refusals = [
            (admin.id, {"name": "Bad Name!", "url": mcp_fake.url}, "name"),
            (admin.id, {"name": "facts", "url": mcp_fake.url}, "CHATBOT_MCP_SERVERS"),  # the environment's
            (admin.id, {"name": "leak", "url": mcp_fake.url, "headers": '{"X": "GROQ_API_KEY"}'}, "MCP_LEAK_"),
            (admin.id, {"name": "leak", "url": mcp_fake.url, "headers": '{"X": "MCP_NOTES_KEY"}'}, "MCP_LEAK_"),
            (admin.id, {"name": "notes", "url": mcp_fake.url}, "exists already"),
            (user.id, {"name": "other", "url": mcp_fake.url}, "Only an admin"),
        ]
        for actor, bad, reason in refusals:
            with pytest.raises(Refused, match=reason):
                await built.actions.add_mcp_server(actor, bad)  # type: ignore[arg-type]
        with pytest.raises(Refused, match="Only an admin"):
            await built.actions.change_mcp_server(user.id, "notes", "enabled", False)  # type: ignore[arg-type]
        with pytest.raises(Refused):
            await built.actions.change_mcp_server(admin.id, "notes", "url", "https://elsewhere")  # type: ignore[arg-type]

        await built.actions.change_mcp_server(admin.id, "notes", "enabled", False)  # type: ignore[arg-type]
        assert not {s.name: s for s in await built.chat.tools.servers()}["notes"].enabled
        assert [s.name for s in await built.chat.tools.enabled_servers(None)] == ["facts"]
        await built.actions.remove_mcp_server(admin.id, "notes")  # type: ignore[arg-type]
        assert [s.name for s in await built.chat.tools.servers()] == ["facts"]

        owner = f"user:{user.id}"
        turn = await built.chat.start_turn(owner, None, 'call search_files {"query": "x"}')
        await followed(built.replies, turn)
        usage = await built.accounts.tool_usage(admin.id)  # type: ignore[arg-type]
        assert usage == [("user@example.com", "search_files", 1, 0)]
    finally:
        await built.replies.aclose()


async def test_tool_calls_go_with_the_reply_into_exports_imports_and_share_links(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, mcp_fake: FakeMcpServer, engine: Engine
) -> None:
    fake.compound_models = COMPOUND_MODELS
    first = await service.start_turn(OWNER, None, 'call facts__lookup {"key": "capital-of-france"}')
    await followed(jobs, first)
    chat = ChatSettings(provider="groq", model="groq/compound", web_search=True)
    second = await service.start_turn(OWNER, first.conversation_id, "And the news?", chat)
    await followed(jobs, second)
    original = await service.tool_calls(OWNER, first.conversation_id, [first.reply_id, second.reply_id])

    with Session(engine) as session:
        ids = exported_ids(session, OWNER, first.conversation_id)
    exported = json.loads(b"".join([chunk async for chunk in stream_json(service.database.run, ids)]))
    [lookup] = exported["conversations"][0]["messages"][1]["tool_calls"]
    assert (lookup["name"], lookup["server"], lookup["status"]) == ("facts__lookup", "facts", "done")
    assert "Paris" in lookup["result"] and lookup["round"] == stored_calls(engine, first.reply_id)[0].round

    with Session(engine) as session:
        [copy_id] = import_conversations(session, STRANGER, parse_import(json.dumps(exported).encode()))
        session.commit()
    copy = await service.load_conversation(STRANGER, copy_id)
    replies = [m.id for m in copy[1] if m.role == "assistant"]
    imported = await service.tool_calls(STRANGER, copy_id, replies)  # type: ignore[arg-type]
    assert [u.name for r in replies for u in imported[r]] == [  # type: ignore[index]
        u.name for r in (first.reply_id, second.reply_id) for u in original[r]
    ]
    assert [u.sources for u in imported[replies[1]]] == [u.sources for u in original[second.reply_id]]  # type: ignore[index]

    token = await ShareLinks(engine).create(OWNER, first.conversation_id)
    snapshot = await ShareLinks(engine).snapshot(token)
    assert snapshot is not None
    shared = [m for m in snapshot["messages"] if m["role"] == "assistant"]
    assert shared[0]["tools"][0]["name"] == "facts__lookup" and "Paris" in shared[0]["tools"][0]["result"]
    assert shared[1]["tools"][0]["sources"] and "headers" not in json.dumps(snapshot)


@pytest.mark.parametrize(
    "calls",
    [
        "not a list",
        [{"name": "x", "status": "exploded"}],
        [{"name": "x", "sources": "[[1, 2]]"}],
        [{"status": "done"}],
    ],
)
def test_an_import_with_malformed_tool_calls_is_refused_whole(calls: object) -> None:
    export = {
        "format": "chatbot_app",
        "version": 1,
        "conversations": [
            {
                "title": "t",
                "created_at": "2026-12-01T00:00:00+00:00",
                "messages": [
                    {"role": "user", "content": "q", "created_at": "2026-12-01T00:00:00+00:00"},
                    {
                        "role": "assistant",
                        "content": "a",
                        "created_at": "2026-12-01T00:00:00+00:00",
                        "tool_calls": calls,
                    },
                ],
            }
        ],
    }
    with pytest.raises(ImportRejected, match="tool"):
        parse_import(json.dumps(export).encode())


async def test_the_provider_call_log_line_names_the_tools_and_their_times_never_their_arguments(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatbot_app.services.reply_jobs")
    await followed(jobs, await service.start_turn(OWNER, None, 'call search_files {"query": "secret words"}'))

    [record] = [r for r in caplog.records if r.getMessage() == "provider_call"]
    [(name, status, duration_ms)] = record.tools  # type: ignore[attr-defined]
    assert (name, status) == ("search_files", "done") and isinstance(duration_ms, int)
    assert "secret words" not in json.dumps(record.__dict__, default=str)


async def test_a_round_runs_at_most_sixteen_calls_and_tells_the_model_of_the_rest(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    calls = [("search_files", json.dumps({"query": f"word{n}"})) for n in range(20)]
    fake.enqueue_stream(Behaviour(tool_calls=calls))
    turn = await service.start_turn(OWNER, None, "Search a lot")
    await followed(jobs, turn)

    assert len(stored_calls(engine, turn.reply_id)) == 16
    answers = tool_messages(fake)
    assert len(answers) == 20 and all(a["content"].startswith("Not run: at most 16") for a in answers[16:])


async def test_text_a_database_cannot_store_is_replaced_not_a_failed_reply(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer, engine: Engine
) -> None:
    fake.enqueue_stream(Behaviour(tool_calls=[("search_files", '{"query": "nul\x00here"}')]))  # a real NUL
    turn = await service.start_turn(OWNER, None, "Odd characters")
    result, _ = await followed(jobs, turn)

    assert result.finished is not None and result.finished.status == MessageStatus.COMPLETE
    [call] = stored_calls(engine, turn.reply_id)
    assert "\x00" not in call.arguments and "\ufffd" in call.arguments
    assert call.status == "done"  # it ran with what can be stored


async def test_a_reply_waiting_for_approval_holds_no_generation_slot(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    service = make_service(tool_settings.model_copy(update={"max_active_replies": 1, "max_waiting_replies": 0}), engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    try:
        waiting = await service.start_turn(OWNER, None, 'call facts__write_note {"text": "later"}')
        await jobs.start(waiting)
        call = await wait_for_status(jobs, waiting.reply_id, "awaiting-approval")

        other, _ = await followed(jobs, await service.start_turn(OWNER, None, "Meanwhile, hello"))
        assert other.finished is not None and other.finished.status == MessageStatus.COMPLETE

        assert await service.answer_tool_call(OWNER, waiting.reply_id, call.call_id, False)
        assert not await service.answer_tool_call(OWNER, waiting.reply_id, call.call_id, True)  # answered once
        await followed_to_end(jobs, waiting)
    finally:
        await jobs.aclose()


async def test_with_web_search_at_hand_search_files_needs_approval(tool_settings: Settings, engine: Engine) -> None:
    service = make_service(tool_settings.model_copy(update={"browser_search_models": ("fake-large",)}), engine)

    with_web = await service.tools.toolbox(OWNER, "groq", "fake-large", web_search=True, mcp_servers="")
    without = await service.tools.toolbox(OWNER, "groq", "fake-large", web_search=False, mcp_servers="")

    assert with_web.functions["search_files"].needs_approval
    assert not without.functions["search_files"].needs_approval


async def test_with_web_search_at_hand_earlier_passages_of_files_do_not_go_back(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(tool_settings.model_copy(update={"browser_search_models": ("fake-large",)}), engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    book = prepare_attachment("book.txt", BOOK, AttachmentLimits())
    try:
        first = await service.start_turn(OWNER, None, "Keep this", attachments=[book])
        await followed(jobs, first)
        question = 'call search_files {"query": "blue whale heart"}\ncall facts__lookup {"key": "capital-of-france"}'
        await followed(jobs, await service.start_turn(OWNER, first.conversation_id, question))
        web = ChatSettings(web_search=True)
        await followed(jobs, await service.start_turn(OWNER, first.conversation_id, "And now?", web))
    finally:
        await jobs.aclose()

    sent = fake.chat_requests()[-1].body
    assert {"type": "browser_search"} in sent["tools"]
    resent = [m for m in sent["messages"] if m["role"] == "tool"]
    assert ["Paris" in m["content"] for m in resent] == [True]  # the lookup's answer only, not the file's passage
    calls = [call["function"]["name"] for m in sent["messages"] for call in m.get("tool_calls") or ()]
    assert calls == ["facts__lookup"]


async def test_an_earlier_replys_calls_go_back_to_the_model_ahead_of_that_reply(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    first = await service.start_turn(OWNER, None, 'call facts__lookup {"key": "capital-of-france"}')
    await followed(jobs, first)

    turn = await service.start_turn(OWNER, first.conversation_id, "And what did you find?")
    await followed(jobs, turn)

    sent = fake.chat_requests()[-1].body["messages"]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    [call] = sent[2]["tool_calls"]
    assert call["function"]["name"] == "facts__lookup" and sent[3]["tool_call_id"] == call["id"]
    assert sent[3]["content"].startswith("Paris") and "Paris" in sent[4]["content"]


async def test_earlier_calls_are_dropped_before_any_message_when_the_budget_is_short(
    tool_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    # The huge tool's answer, cut to 3,000 characters, and the reply quoting it do not both fit 1,000 tokens.
    settings = tool_settings.model_copy(update={"tool_result_chars": 3_000, "context_budget_tokens": 1_000})
    service = make_service(settings, engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    try:
        first = await service.start_turn(OWNER, None, "call facts__huge {}")
        await followed(jobs, first)
        turn = await service.start_turn(OWNER, first.conversation_id, "Shorter, please")
        await followed(jobs, turn)
    finally:
        await jobs.aclose()

    sent = fake.chat_requests()[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "call facts__huge {}" and sent[-1]["content"] == "Shorter, please"


def test_calls_that_repeat_an_id_go_back_as_rounds_of_their_own() -> None:
    """An older export's calls have no round (0), and a model may reuse an id each round: one assistant message
    never names an id twice (a provider would refuse it, on every later turn)."""
    from chatbot_app.services.chat_service import _exchange

    rows = [
        ToolCallRecord(reply_id=1, call_id=call_id, round=0, name="facts__lookup", status="done", result=result)
        for call_id, result in (("call_1", "Paris"), ("call_2", "Rome"), ("call_1", "Madrid"))
    ]

    exchange = _exchange(rows)

    assert [(m.role, [c.id for c in m.tool_calls], m.tool_call_id) for m in exchange] == [
        ("assistant", ["call_1", "call_2"], None),
        ("tool", [], "call_1"),
        ("tool", [], "call_2"),
        ("assistant", ["call_1"], None),
        ("tool", [], "call_1"),
    ]
