"""Conversations and turns: store the user's message, prepare the provider request, store the reply.

Running the reply itself is a job (services.reply_jobs). Database work runs in a worker thread so
the event loop never blocks on I/O, and the reply is written when it ends (plus a checkpoint every
few seconds), never per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.providers import ModelGroup, ProviderRegistry
from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    Completion,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
)
from chatbot_app.services import attachments as files
from chatbot_app.services.attachments import AttachmentRejected, PreparedAttachment
from chatbot_app.services.chat_settings import (
    BUILTIN_PRESETS,
    ChatSettings,
    ResolvedSettings,
    model_choice,
    resolve,
)
from chatbot_app.services.context import CHARS_PER_TOKEN, context_tokens, estimate_tokens, trim_to_budget
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.limits import AbuseLimits, LimitReached
from chatbot_app.services.quota import QuotaExceeded, Spent, TokenQuota, prompt_token_bound
from chatbot_app.services.reply_log import ToolUpdate
from chatbot_app.services.retry import RetryNotice, RetryPolicy, with_retries
from chatbot_app.services.tools.catalog import ToolCatalog
from chatbot_app.services.tools.mcp_servers import McpClients
from chatbot_app.services.tools.runner import PROVIDER_SERVER
from chatbot_app.services.tools.toolbox import Toolbox, fit
from chatbot_app.services.validation import InvalidInput
from chatbot_app.storage import attachments as attachment_store
from chatbot_app.storage import conversations as store
from chatbot_app.storage import documents
from chatbot_app.storage import presets as presets_store
from chatbot_app.storage import tool_calls as tool_store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import (
    Attachment,
    Conversation,
    Message,
    MessageStatus,
    ToolCallRecord,
    ToolCallStatus,
)

log = logging.getLogger(__name__)

#: The calls of an earlier reply that can go back to the model (one still running or waiting cannot).
FINISHED_TOOL_STATUSES = frozenset({ToolCallStatus.DONE, ToolCallStatus.ERROR, ToolCallStatus.DENIED})
#: How much history is read from the database before trimming to the token budget.
HISTORY_WINDOW = 200
#: Pauses between tries of a reply's final save when the database is busy or restarting (about 30 s
#: in all: a PostgreSQL restart fits in it); then it is given up, and the sweep ends the reply later.
FINAL_SAVE_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


INTERRUPTED_TOOL = "The reply was interrupted (its server stopped) before this call ended."
PARENT_NOT_A_REPLY = "A message follows a finished reply: name one as its parent."
TITLE_INSTRUCTION = (
    "Write a title of at most six words for the conversation the user shows you. "
    "Reply with the title only: no quotes, no punctuation at the end."
)
SUMMARY_INSTRUCTION = (
    "Summarize the conversation the user shows you in a few sentences: what was asked, "
    "what was answered or decided, and what is still open. Reply with the summary only."
)


class ConversationNotFound(LookupError):
    """Unknown, foreign, or malformed conversation id: all three look the same to the caller."""


class MessageNotFound(ConversationNotFound):
    """The caller's conversation has no such message (unknown, or another conversation's)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """A user message that has been stored, and the reply row that will hold the answer."""

    owner_id: str
    conversation_id: str
    title: str
    created_conversation: bool
    user_message_id: int
    reply_id: int
    history: list[ChatMessage]
    settings: ChatSettings


@dataclass(frozen=True, slots=True)
class Fork:
    """A conversation copied up to a message, and the reply it starts when that message is a question."""

    conversation_id: str
    turn: Turn | None


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """The provider, options and context a reply is generated with, and the tools it may call."""

    provider: ChatProvider
    options: GenerationOptions
    context: list[ChatMessage]
    toolbox: Toolbox = field(default_factory=Toolbox)
    #: The context's budget (CHATBOT_CONTEXT_BUDGET_TOKENS): tool answers are cut to fit what is left of it.
    context_budget_tokens: int = 8_000

    def after_tools(
        self, text: str, calls: Sequence[ToolCall], answers: Sequence[ChatMessage], *, last: bool
    ) -> ReplyRequest:
        """The request for the model's next round: its calls and their answers added to the context, the
        answers cut to what the context budget has room for. On the `last` round no tools are offered,
        so the model answers with what it has."""
        asked = ChatMessage("assistant", text, tool_calls=tuple(calls))
        left = self.context_budget_tokens - context_tokens([*self.context, asked])
        room = max(left * CHARS_PER_TOKEN, 2_000)  # at least a little, so that the model hears back
        context = [*self.context, asked, *fit(answers, room)]
        options = replace(self.options, tools=(), tool_choice=None, parallel_tool_calls=None) if last else self.options
        return replace(self, context=context, options=options)

    def limited_to(self, max_tokens: int) -> ReplyRequest:
        """The same request allowed at most `max_tokens` of completion (what the quota left)."""
        return (
            self
            if max_tokens >= self.options.max_tokens
            else replace(self, options=replace(self.options, max_tokens=max_tokens))
        )

    def events(self, *, batch: bool, retry: RetryPolicy) -> AsyncIterator[ProviderEvent | RetryNotice]:
        """The provider's events (in batch mode: one whole-text event), retried before the first one."""
        if batch:
            return with_retries(lambda: _whole(self.provider, self.context, self.options), retry)
        return with_retries(lambda: self.provider.stream(self.context, self.options), retry)


@dataclass(frozen=True, slots=True)
class OpenedConversation:
    """What a page shows when it opens a conversation."""

    conversation: Conversation
    messages: list[Message]
    has_earlier: bool
    stats: store.ConversationStats


class ChatService:
    """The chat flow, shared by the UI state and the REST API."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        providers: ProviderRegistry,
        retry: RetryPolicy | None = None,
        *,
        limits: AbuseLimits | None = None,
        quota: TokenQuota | None = None,
        tools: ToolCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.retry = retry or RetryPolicy(attempts=settings.retry_attempts)
        self.limits = limits or AbuseLimits.from_settings(settings)
        self.slots = self.limits.slots
        self.quota = quota or TokenQuota(engine, settings.daily_tokens_per_user)
        self.database = Database(engine)
        self._db = self.database.run
        self.tools = tools or ToolCatalog(
            settings,
            self.database,
            McpClients(
                allow_private=settings.mcp_allow_private,
                ttl_s=settings.mcp_tools_ttl_s,
                timeout_s=settings.tool_timeout_s,
                max_result_chars=settings.tool_result_chars,
            ),
            providers,
        )

    # -- reading ----------------------------------------------------------------------------

    async def load_conversation(
        self, owner_id: str, conversation_id: str, limit: int | None = None
    ) -> tuple[Conversation, list[Message]]:
        """The conversation and its newest messages; raises ConversationNotFound."""

        def work(session: Session) -> tuple[Conversation, list[Message]]:
            conversation = _owned(session, owner_id, conversation_id)
            return conversation, store.latest_messages(session, conversation_id, limit)

        return await self._db(work)

    async def open_conversation(
        self,
        owner_id: str,
        conversation_id: str,
        *,
        window: int,
        at_message: int = 0,
        cap: int = 2_000,
        to_its_branch: bool = True,
    ) -> OpenedConversation:
        """A conversation as a page opens it, in one transaction and a fixed number of queries.

        It shows the newest `window` messages, reaching back to `at_message` when that is one of its
        own (at most `cap` messages). A message on another branch (a search hit) opens that branch: it becomes
        the current one, with the newest path below the message; without `to_its_branch`, such a message is
        passed over (a page that keeps what it shows above a switch made elsewhere). Raises ConversationNotFound.
        """

        def work(session: Session) -> OpenedConversation:
            conversation = _owned(session, owner_id, conversation_id, to_change=bool(at_message) and to_its_branch)
            target = session.get(Message, at_message) if at_message else None
            on_another_branch = (
                target is not None
                and target.conversation_id == conversation.id
                and not store.is_on_path(session, conversation.id, at_message)
            )
            start = 0 if on_another_branch and not to_its_branch else at_message
            if on_another_branch and to_its_branch:
                store.set_current_leaf(
                    session, conversation, store.newest_leaf_under(session, conversation.id, at_message)
                )
            messages = store.messages_from(session, conversation.id, start, window, cap)
            first_id = messages[0].id if messages else None
            has_earlier = bool(first_id and store.messages_before(session, conversation.id, first_id, 1))
            return OpenedConversation(
                conversation, messages, has_earlier, store.conversation_stats(session, conversation.id)
            )

        return await self._db(work)

    async def load_message(self, owner_id: str, conversation_id: str, message_id: int) -> Message | None:
        """One message of the owner's conversation (None if it is gone); raises ConversationNotFound."""

        def work(session: Session) -> Message | None:
            conversation = _owned(session, owner_id, conversation_id)
            message = session.get(Message, message_id)
            return message if message is not None and message.conversation_id == conversation.id else None

        return await self._db(work)

    async def stale_replies(self) -> list[int]:
        """Replies left `streaming` by a job whose database heartbeat stopped `stale_reply_s` ago."""
        stale_after = timedelta(seconds=self.settings.stale_reply_s)
        return await self._db(lambda s: store.stale_replies(s, stale_after))

    async def interrupt_reply(self, reply_id: int, text: str = "", reasoning: str = "") -> bool:
        """End a reply whose job died as `interrupted`, with `text` if it has more than the last checkpoint;
        False if it had ended already (see storage.conversations.interrupt_reply)."""

        def work(session: Session) -> bool:
            ended = store.interrupt_reply(session, reply_id, text, reasoning)
            if ended:
                tool_store.end_unfinished(session, reply_id, INTERRUPTED_TOOL)
            return ended

        return await self._db(work)

    async def request_stop(self, reply_id: int) -> bool:
        """Write a Stop on the reply's row, for its job's process to read; False if it is no longer written."""
        return await self._db(lambda s: store.request_stop(s, reply_id))

    # -- settings ---------------------------------------------------------------------------

    async def settings_for_new_chat(self, owner_id: str) -> ChatSettings:
        """A new conversation starts from the settings of the owner's latest one."""
        latest = await self._db(lambda s: store.latest_conversation(s, owner_id))
        return settings_of(latest) if latest is not None else ChatSettings()

    async def conversation_settings(self, owner_id: str, conversation_id: str) -> ChatSettings:
        """The settings stored on a conversation; raises ConversationNotFound."""

        return await self._db(lambda s: settings_of(_owned(s, owner_id, conversation_id)))

    async def save_settings(self, owner_id: str, conversation_id: str, chat: ChatSettings) -> None:
        """Store `chat` on the conversation; raises ConversationNotFound."""

        await self._db(
            lambda s: store.update_settings(s, _owned(s, owner_id, conversation_id, to_change=True), **asdict(chat))
        )

    async def presets(self, owner_id: str) -> dict[str, str]:
        """Built-in system-prompt presets, then the owner's own (name -> prompt)."""
        own = await self._db(lambda s: presets_store.list_presets(s, owner_id))
        return {**BUILTIN_PRESETS, **{p.name: p.prompt for p in own}}

    async def save_preset(self, owner_id: str, name: str, prompt: str) -> None:
        await self._db(lambda s: presets_store.save_preset(s, owner_id, name, prompt))

    # -- provider ---------------------------------------------------------------------------

    async def model_menu(self) -> tuple[list[ModelGroup], str]:
        """Every configured provider's models, and the "provider:model" a new chat starts with."""
        groups = await self.providers.model_groups()
        default = ""
        for group in groups:
            if group.provider == self.providers.default_name and group.models:
                model = self.settings.model if self.settings.model in group.models else group.models[0]
                default = model_choice(group.provider, model)
        return groups, default

    async def _choose(self, chat: ChatSettings) -> tuple[ChatProvider, GenerationOptions, ResolvedSettings]:
        """The provider and options a conversation's settings resolve to; raises ProviderError."""
        provider = self.providers.get(chat.provider)
        model = chat.model
        if model is None and provider.name == self.providers.default_name:
            model = self.settings.model
        if model is None:
            models = await provider.list_models()
            if not models:
                raise ProviderError(ErrorKind.MODEL_NOT_FOUND, f"{provider.name} lists no models")
            model = models[0]
        resolved = resolve(chat, self.settings)
        options = GenerationOptions(model, resolved.temperature, resolved.max_tokens, resolved.top_p)
        return provider, options, resolved

    def _context(
        self, turn: Turn, provider: ChatProvider, resolved: ResolvedSettings, offered: Collection[str] = ()
    ) -> list[ChatMessage]:
        budget = self.settings.context_budget_tokens
        if provider.context_tokens is not None:
            budget = min(budget, provider.context_tokens - resolved.max_tokens)
        return trim_to_budget(resolved.system_prompt, turn.history, max(budget, 1), offered)

    # -- titles and summaries ---------------------------------------------------------------

    async def _ask(self, conversation: Conversation, instruction: str, transcript: str, max_tokens: int) -> str:
        """One batch request to the conversation's own provider and model, counted against its owner's quota.

        The transcript keeps its newest part that fits the provider's context budget. Raises ProviderError,
        or QuotaExceeded (nothing was sent).
        """
        provider, options, _ = await self._choose(settings_of(conversation))
        budget = self.settings.context_budget_tokens
        if provider.context_tokens is not None:
            budget = min(budget, provider.context_tokens - max_tokens)
        room = max(CHARS_PER_TOKEN * (budget - estimate_tokens(instruction)), 400)
        context = [ChatMessage("system", instruction), ChatMessage("user", transcript[-room:])]
        reservation = await self.quota.reserve(conversation.owner_id, prompt_token_bound(context), max_tokens)
        completion: Completion | None = None
        try:
            async with self.limits.slot():
                completion = await provider.complete(
                    context, replace(options, max_tokens=reservation.max_tokens, temperature=0.2)
                )
        finally:
            usage = completion.usage if completion is not None else None
            text = completion.text if completion is not None else ""
            prompt_estimate = context_tokens(context)
            spent = Spent.of(reservation, options.model, usage, prompt_estimate=prompt_estimate, streamed=text)
            await self.quota.settle(reservation, spent)
        return completion.text.strip()

    async def _admit_or_raise(self, owner_id: str, address: str | None) -> None:
        if refusal := await self.limits.admit(owner_id, address):
            raise LimitReached(refusal)

    async def suggest_title(self, owner_id: str, conversation_id: str, *, address: str | None = None) -> str | None:
        """Ask the model to title the conversation; None (keeping the first-words title) if that fails.

        Counts against the abuse limits like a message, and against the quota (LimitReached, a
        ProviderError or QuotaExceeded also gives None, as does a conversation renamed, cleared or deleted
        meanwhile: the user's own title, or no messages to name, wins).
        """
        conversation, messages = await self.load_conversation(owner_id, conversation_id, limit=4)
        try:
            await self._admit_or_raise(owner_id, address)
            title = clean_title(await self._ask(conversation, TITLE_INSTRUCTION, _transcript(messages), 24))
        except (ProviderError, QuotaExceeded) as exc:
            log.info("no title for %s: %s", conversation_id, getattr(exc, "kind", "quota"))
            return None
        if not title:
            return None

        def work(session: Session) -> bool:
            now = _owned(session, owner_id, conversation_id, to_change=True)
            if now.title != conversation.title or now.current_leaf_id is None:
                return False
            store.rename_conversation(session, now, title)
            return True

        try:
            return title if await self._db(work) else None
        except ConversationNotFound:
            return None

    async def summarize(self, owner_id: str, conversation_id: str) -> str:
        """Ask the model for a summary and store it on the conversation (admission is the caller's).

        Raises ConversationNotFound, ProviderError, or QuotaExceeded.
        """
        conversation, messages = await self.load_conversation(owner_id, conversation_id, limit=HISTORY_WINDOW)
        if not any(m.content for m in messages):
            raise ProviderError(ErrorKind.BAD_REQUEST, "nothing to summarize yet")
        summary = await self._ask(conversation, SUMMARY_INSTRUCTION, _transcript(messages), 400)

        def work(session: Session) -> None:
            now = _owned(session, owner_id, conversation_id, to_change=True)
            if now.current_leaf_id is not None:  # a Clear meanwhile took the messages it sums up
                store.set_summary(session, now, summary)

        await self._db(work)
        return summary

    # -- the turn ---------------------------------------------------------------------------

    async def start_turn(
        self,
        owner_id: str,
        conversation_id: str | None,
        text: str,
        chat: ChatSettings | None = None,
        attachments: Sequence[PreparedAttachment] = (),
        parent_id: int | None = None,
        shown_id: int | None = None,
    ) -> Turn:
        """Commit the user's message (with its checked files) and an empty `streaming` reply, before any provider call.

        `chat`, when given, becomes the conversation's stored settings; otherwise the stored ones apply.
        `parent_id` answers on a branch: the message follows that reply (of the conversation's) instead of
        the current path's last message; `shown_id` is the last message the sender's page shows (see
        `_act_on_shown_branch`). Raises AttachmentRejected (nothing stored) for too many files, or images for
        a model that cannot see them; ConversationNotFound also for a parent that is not the conversation's,
        InvalidInput for one that is not a finished reply.
        """
        files.check_count(len(attachments), files.AttachmentLimits.from_settings(self.settings))
        if any(a.is_image for a in attachments):
            await self._check_vision(owner_id, conversation_id, chat)

        def work(session: Session) -> Turn:
            if conversation_id is None:
                conversation = store.create_conversation(session, owner_id, title=_title_from(text))
            else:
                conversation = _owned(session, owner_id, conversation_id, to_change=True)
            if chat is not None:
                store.update_settings(session, conversation, **asdict(chat))
            if parent_id is not None:
                parent = session.get(Message, parent_id)
                if parent is None or parent.conversation_id != conversation.id:
                    raise MessageNotFound(conversation.id)
                if not _is_finished_reply(parent):
                    raise InvalidInput(PARENT_NOT_A_REPLY)
                store.set_current_leaf(session, conversation, parent_id)
            elif conversation_id is not None:
                _act_on_shown_branch(session, conversation, shown_id)
            message = store.add_message(session, conversation, "user", text)
            if attachments:
                assert message.id is not None
                for row in attachment_store.add_attachments(session, message.id, attachments):
                    if row.text:
                        assert row.id is not None
                        documents.index_document(session, row.id, owner_id, row.text)
            return self._new_reply(session, conversation, created=conversation_id is None)

        return await self._db(work)

    async def _check_vision(self, owner_id: str, conversation_id: str | None, chat: ChatSettings | None) -> None:
        """Refuse images for a model that cannot see them, naming the models that can."""
        if chat is None:
            chat = (
                await self.conversation_settings(owner_id, conversation_id)
                if conversation_id is not None
                else ChatSettings()
            )
        try:
            _, options, _ = await self._choose(chat)
        except ProviderError:
            return  # no usable provider: the reply will say so
        if options.model not in self.settings.vision_models:
            raise AttachmentRejected(files.vision_refusal(options.model, self.settings.vision_models))

    def budget_chars(self) -> int:
        """Characters of file text one message may bring into the context."""
        return files.text_budget_chars(self.settings.context_budget_tokens)

    async def start_regeneration(self, owner_id: str, conversation_id: str, shown_id: int | None = None) -> Turn:
        """Answer the last user message again: a new version of the reply, beside the ones it had.

        `shown_id`: the last message the page shows (see `_act_on_shown_branch`)."""

        def work(session: Session) -> Turn:
            conversation = _owned(session, owner_id, conversation_id, to_change=True)
            _act_on_shown_branch(session, conversation, shown_id)
            last_user = store.last_user_message(session, conversation.id)
            if last_user is None or last_user.id is None:
                raise ConversationNotFound(conversation_id)
            store.set_current_leaf(session, conversation, last_user.id)
            return self._new_reply(session, conversation, created=False)

        return await self._db(work)

    async def start_edit(self, owner_id: str, conversation_id: str, message_id: int, text: str) -> Turn:
        """Answer an edited user message: a new version of it (with its files), beside the one it had and
        everything that followed that one."""

        def work(session: Session) -> Turn:
            conversation = _owned(session, owner_id, conversation_id, to_change=True)
            message = session.get(Message, message_id)
            if message is None or message.conversation_id != conversation.id or message.role != "user":
                raise ConversationNotFound(conversation_id)
            store.set_current_leaf(session, conversation, message.parent_id)
            edited = store.add_message(session, conversation, "user", text)
            assert edited.id is not None
            attachment_store.copy_attachments(session, {message_id: edited.id})
            return self._new_reply(session, conversation, created=False)

        return await self._db(work)

    async def show_branch(self, owner_id: str, conversation_id: str, message_id: int) -> None:
        """Make the newest path through the message the current one (stored, for every tab and device); raises
        ConversationNotFound (also for a message that is not the conversation's)."""

        def work(session: Session) -> None:
            conversation = _owned(session, owner_id, conversation_id, to_change=True)
            message = session.get(Message, message_id)
            if message is None or message.conversation_id != conversation.id:
                raise MessageNotFound(conversation_id)
            store.set_current_leaf(session, conversation, store.newest_leaf_under(session, conversation.id, message_id))

        await self._db(work)

    async def switch_version(self, owner_id: str, conversation_id: str, message_id: int, step: int) -> bool:
        """Show the version of a message `step` places from it, and the newest path below that one.

        The choice is stored, so every tab and device shows that branch; a reply being written on the branch
        left goes on. False if there is no version there; raises ConversationNotFound (also for a message
        that is not the conversation's).
        """

        def work(session: Session) -> bool:
            conversation = _owned(session, owner_id, conversation_id, to_change=True)
            versions = store.siblings_of(session, conversation.id, message_id)
            if not versions:
                raise MessageNotFound(conversation_id)
            place = versions.index(message_id) + step
            if not 0 <= place < len(versions):
                return False
            store.set_current_leaf(
                session, conversation, store.newest_leaf_under(session, conversation.id, versions[place])
            )
            return True

        return await self._db(work)

    async def fork(self, owner_id: str, conversation_id: str, message_id: int) -> Fork:
        """A new conversation with a copy of the path that ends at the message (and its files): "Branch in new
        chat". A copy that ends on a question starts its reply at once (`Fork.turn`: the caller runs it).
        Raises ConversationNotFound (also for a message that is not the conversation's)."""

        def work(session: Session) -> Fork:
            # Held, so that a Clear or a Delete waits: the path is copied whole, files and all.
            conversation = _owned(session, owner_id, conversation_id, to_change=True)
            message = session.get(Message, message_id)
            if message is None or message.conversation_id != conversation.id:
                raise MessageNotFound(conversation_id)
            title = _title_from(f"{conversation.title} (branch)", words=12)
            copy, copies = store.fork(session, conversation, message_id, title)
            # The copies are indexed too: the new chat's files stay searchable once the original is deleted.
            documents.copy_chunks(session, attachment_store.copy_attachments(session, copies))
            turn = self._new_reply(session, copy, created=False) if message.role == "user" else None
            return Fork(copy.id, turn)

        return await self._db(work)

    async def message_role(self, owner_id: str, conversation_id: str, message_id: int) -> str:
        """Whose the message is ("user" or "assistant"); raises ConversationNotFound (also for a message that is
        not the conversation's)."""
        message = await self.load_message(owner_id, conversation_id, message_id)
        if message is None:
            raise MessageNotFound(conversation_id)
        return message.role

    async def read_path(
        self, owner_id: str, conversation_id: str
    ) -> tuple[Conversation, list[Message], dict[int, list[int]]]:
        """The conversation, its current path, and each path message's versions (its own id among them, oldest
        first): what the API returns. A fixed number of queries at any length; raises ConversationNotFound."""

        def work(session: Session) -> tuple[Conversation, list[Message], dict[int, list[int]]]:
            conversation = _owned(session, owner_id, conversation_id)
            messages = store.latest_messages(session, conversation.id)
            versions = store.versions_of(session, conversation.id, [m.id for m in messages if m.id is not None])
            return conversation, messages, versions

        return await self._db(work)

    async def version_positions(
        self, owner_id: str, conversation_id: str, message_ids: list[int]
    ) -> dict[int, tuple[int, int]]:
        """Where each message with other versions stands among them ("2/3"); raises ConversationNotFound."""

        def work(session: Session) -> dict[int, tuple[int, int]]:
            conversation = _owned(session, owner_id, conversation_id)
            return store.version_positions(session, conversation.id, message_ids)

        return await self._db(work)

    async def tool_calls(
        self, owner_id: str, conversation_id: str, reply_ids: list[int]
    ) -> dict[int, list[ToolUpdate]]:
        """The tool calls of the conversation's replies, as their logs carried them; raises ConversationNotFound."""

        def work(session: Session) -> dict[int, list[ToolUpdate]]:
            conversation = _owned(session, owner_id, conversation_id)
            found = tool_store.calls_of(session, conversation.id, reply_ids)
            return {reply_id: [_tool_update(r) for r in records] for reply_id, records in found.items()}

        return await self._db(work)

    async def answer_tool_call(self, owner_id: str, reply_id: int, call_id: str, approve: bool) -> bool:
        """The owner approves or denies a call that waits; False if it is not theirs, or not waiting."""
        return await self._db(lambda session: tool_store.answer(session, owner_id, reply_id, call_id, approve))

    def _new_reply(self, session: Session, conversation: Conversation, *, created: bool) -> Turn:
        """An empty `streaming` reply to the conversation's last user message."""
        history = store.latest_messages(session, conversation.id, HISTORY_WINDOW)
        reply = store.add_message(session, conversation, "assistant", "", status=MessageStatus.STREAMING)
        user_id = next((m.id for m in reversed(history) if m.role == "user"), None)
        assert reply.id is not None and user_id is not None
        attached = attachment_store.attachments_of(
            session, [m.id for m in history if m.role == "user" and m.id is not None]
        )
        calls = tool_store.calls_of(
            session, conversation.id, [m.id for m in history if m.role == "assistant" and m.id is not None]
        )
        return Turn(
            owner_id=conversation.owner_id,
            conversation_id=conversation.id,
            title=conversation.title,
            created_conversation=created,
            user_message_id=user_id,
            reply_id=reply.id,
            history=_as_context(history, attached, self.budget_chars(), calls),
            settings=settings_of(conversation),
        )

    async def prepare_reply(self, turn: Turn) -> ReplyRequest:
        """The provider request for a turn's reply; raises ProviderError."""
        provider, options, resolved = await self._choose(turn.settings)
        chat = turn.settings
        toolbox = await self.tools.toolbox(
            turn.owner_id, provider.name, options.model, web_search=chat.web_search, mcp_servers=chat.mcp_servers
        )
        context = self._context(turn, provider, resolved, offered=toolbox.resendable())
        if options.model not in self.settings.vision_models:  # earlier images stay out of a text model's context
            context = [files.without_images(m) for m in context]
        options = toolbox.offered_in(options)
        budget = self.settings.context_budget_tokens
        return ReplyRequest(provider, options, context, toolbox, context_budget_tokens=budget)

    async def describe_failure(self, kind: str, provider_name: str | None) -> str:
        """The sentence for a failed reply; a retired or unknown model also gets the models available now."""
        available: list[str] = []
        if kind == ErrorKind.MODEL_NOT_FOUND and provider_name is not None:
            with contextlib.suppress(ProviderError):  # no list: the plain message
                available = await self.providers.get(provider_name).list_models()
        return describe_error(kind, provider_name, available)

    async def checkpoint_reply(self, reply_id: int, text: str | None) -> bool:
        """Heartbeat a reply being written (saving its text if given); False if its row was removed."""
        return not (await self.checkpoint_replies({reply_id: text})).gone

    async def checkpoint_replies(self, checkpoints: Mapping[int, str | None]) -> store.CheckpointRound:
        """Heartbeat replies being written, saving the texts given, in one transaction; which of them were
        removed, and which someone asked to stop."""
        return await self._db(partial(store.checkpoint_replies, checkpoints=checkpoints))

    async def save_final_reply(self, reply_id: int, text: str, status: MessageStatus, **fields: object) -> bool:
        """Store a reply's end, retried while the database is busy; False if its row was removed meanwhile
        (or every try failed)."""
        save = partial(store.save_reply, message_id=reply_id, content=text, status=status, **fields)
        return await _retrying_final_save(self._db, save)

    async def owns_reply(self, owner_id: str, reply_id: int) -> bool:
        """Whether reply `reply_id` is in one of the owner's conversations."""
        return await self._db(lambda s: store.reply_conversation(s, owner_id, reply_id)) is not None

    async def reply_to_read(self, owner_id: str, reply_id: int) -> tuple[str, str | None] | None:
        """A reply of the owner's that is no longer being written, and its conversation's voice; else None."""

        def work(session: Session) -> tuple[str, str | None] | None:
            found = store.owned_reply(session, owner_id, reply_id)
            if found is None or found[0].status == MessageStatus.STREAMING:
                return None
            return found[0].content, found[1].voice

        return await self._db(work)

    async def owners_streaming_replies(self, owner_id: str) -> list[int]:
        """Every reply still being written in the owner's conversations."""
        return await self._db(lambda s: store.owners_streaming_replies(s, owner_id))

    async def streaming_replies(self, owner_id: str, conversation_id: str, *, on_path: bool = False) -> list[int]:
        """The conversation's replies still being written (on its current path only, if `on_path`); raises
        ConversationNotFound."""
        return await self._db(
            lambda s: store.streaming_replies(s, _owned(s, owner_id, conversation_id).id, on_path=on_path)
        )


async def _retrying_final_save(db: Callable[..., Awaitable[bool]], save: Callable[[Session], bool]) -> bool:
    """Run `save` (which says whether it stored), retrying while the database is busy or unreachable."""
    for delay in (*FINAL_SAVE_RETRY_DELAYS_S, None):
        try:
            return await db(save)
        except OperationalError as exc:  # "database is locked", a dropped connection: worth another try
            if delay is None:
                log.error("final save failed after %d tries: %s", len(FINAL_SAVE_RETRY_DELAYS_S) + 1, exc)
                return False
            log.warning("final save failed, retrying in %.1f s: %s", delay, exc)
            await asyncio.sleep(delay)
    return False


async def _whole(
    provider: ChatProvider, context: list[ChatMessage], options: GenerationOptions
) -> AsyncIterator[ProviderEvent]:
    """A batch completion in the shape of a stream: the whole text, the tools it calls, then its usage."""
    completion = await provider.complete(context, options)
    yield TextDelta(completion.text)
    for call in completion.tool_calls:
        yield call
    if completion.usage is not None:
        yield completion.usage


def _owned(session: Session, owner_id: str, conversation_id: str, *, to_change: bool = False) -> Conversation:
    """The owner's conversation; `to_change` holds it until the transaction ends (see store.get_conversation)."""
    conversation = store.get_conversation(session, conversation_id, owner_id, to_change=to_change)
    if conversation is None:
        raise ConversationNotFound(conversation_id)
    return conversation


def _is_finished_reply(message: Message) -> bool:
    """A message that a user message may follow: a reply no longer being written."""
    return message.role == "assistant" and message.status != MessageStatus.STREAMING


def _act_on_shown_branch(session: Session, conversation: Conversation, shown_id: int | None) -> None:
    """A page that shows another branch than the current one (switched since, in another tab or device) acts
    on the branch it shows: its last reply becomes the current leaf. A page that is only behind (its last
    message is on the current path) acts on the path's end, as before; anything else given is ignored."""
    if not shown_id:
        return
    shown = session.get(Message, shown_id)
    if (
        shown is not None
        and shown.conversation_id == conversation.id
        and _is_finished_reply(shown)
        and not store.is_on_path(session, conversation.id, shown_id)
    ):
        store.set_current_leaf(session, conversation, shown_id)


def _tool_update(record: ToolCallRecord) -> ToolUpdate:
    """A stored tool call as the reply log carries it."""
    sources = tuple((str(title), str(url)) for title, url in json.loads(record.sources)) if record.sources else ()
    return ToolUpdate(
        call_id=record.call_id,
        name=record.name,
        status=record.status,
        server=record.server,
        arguments=record.arguments,
        result=record.result,
        error=record.error or "",
        duration_ms=record.duration_ms,
        sources=sources,
    )


def settings_of(conversation: Conversation) -> ChatSettings:
    return ChatSettings(**{f.name: getattr(conversation, f.name) for f in dataclass_fields(ChatSettings)})


def _as_context(
    messages: list[Message],
    attached: dict[int, list[Attachment]] | None = None,
    budget_chars: int = 0,
    calls: dict[int, list[ToolCallRecord]] | None = None,
) -> list[ChatMessage]:
    """Stored messages as provider context; empty or failed replies carry nothing to remember.

    A reply's reasoning is never sent back (providers ask for that, and it would fill the budget); a user
    message's files come with it, as text or images; a reply's own tool calls ride along with it, for the
    context to send if it has room.
    """
    attached, calls = attached or {}, calls or {}
    return [
        files.message_with_files(m.role, m.content, attached[m.id], budget_chars)
        if m.id in attached
        else ChatMessage(m.role, m.content, earlier_tools=_exchange(calls.get(m.id or 0, ())))  # type: ignore[arg-type]
        for m in messages
        if m.role in ("user", "assistant") and (m.content or m.id in attached)
    ]


def _exchange(records: Sequence[ToolCallRecord]) -> tuple[ChatMessage, ...]:
    """A reply's finished function calls as the model saw them: per round, its calls, then their answers.
    Tools the provider ran itself (Groq's compound models) were never the model's calls to answer."""
    finished = [r for r in records if r.server != PROVIDER_SERVER and r.status in FINISHED_TOOL_STATUSES]
    exchange: list[ChatMessage] = []
    rounds: list[list[ToolCallRecord]] = []
    for record in finished:  # a new round, or an id seen already (an import's calls all have round 0)
        if not rounds or record.round != rounds[-1][0].round or record.call_id in {r.call_id for r in rounds[-1]}:
            rounds.append([])
        rounds[-1].append(record)
    for rows in rounds:
        calls = tuple(ToolCall(r.call_id, r.name, r.arguments) for r in rows)
        exchange.append(ChatMessage("assistant", "", tool_calls=calls))
        exchange += [ChatMessage("tool", r.result or r.error or "", tool_call_id=r.call_id) for r in rows]
    return tuple(exchange)


def clean_title(text: str, max_words: int = 8) -> str:
    """A model's title suggestion without quotes, Markdown or trailing punctuation."""
    words = text.strip().splitlines()[0].strip(" \t\"'`*#").split() if text.strip() else []
    return " ".join(words[:max_words]).rstrip(".:;,!")[:80]


def _transcript(messages: list[Message]) -> str:
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages if m.content)


def _title_from(text: str, words: int = 8) -> str:
    title = " ".join(text.split()[:words])
    return title[:80] or "New chat"
