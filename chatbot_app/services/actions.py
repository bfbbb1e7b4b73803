"""Every action a user can take, one method each: the one door the UI, /api and /v1 all go through.

Each action owns what must hold whichever door it came through:
- admission: the limit per identity or key, the limit per client address, new identities per
  address, the concurrency cap, and the daily quota (checked here, then held per provider call);
- for a change that replaces a reply being written (regenerate, edit, clear, delete): stop that
  reply and wait until it is stored, so nothing writes into what the change removed.

The Reflex states and the API routes only translate input and output. A refusal, whatever its
cause, arrives as `Refused` with a message for the person and nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chatbot_app.config import Settings
from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    Completion,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
)
from chatbot_app.services.accounts import Accounts, NotAllowed, owner_id_of
from chatbot_app.services.attachments import AttachmentRejected, PreparedAttachment
from chatbot_app.services.branch_changes import BranchChanges
from chatbot_app.services.chat_service import ChatService, ConversationNotFound, MessageNotFound, Turn
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.context import context_tokens
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.export_links import LinksUnavailable, SignedLinks
from chatbot_app.services.import_jobs import (
    ALREADY_RUNNING,
    ImportAlreadyRunning,
    ImportJobs,
    ImportProgress,
    ImportsUnavailable,
    MemoryImportProgress,
)
from chatbot_app.services.library import ConversationLibrary, ExportStream, ImportSummary
from chatbot_app.services.limits import Refusal
from chatbot_app.services.quota import (
    QuotaExceeded,
    Reservation,
    Spent,
    TokenQuota,
    audio_token_bound,
    audio_tokens,
    prompt_token_bound,
    speech_tokens,
)
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.shares import SharedLink, ShareLinks
from chatbot_app.services.speech import SPEECH_LINK_TTL_S, Speaker, joined_wav, speech_url
from chatbot_app.services.spoken_text import pieces_to_read
from chatbot_app.services.tools.mcp_servers import parse_mcp_servers
from chatbot_app.services.transcription import Transcriber, Transcript, TranscriptionRejected
from chatbot_app.services.validation import InvalidInput, clean_message, is_conversation_id, storable
from chatbot_app.storage.models import McpServerRow
from chatbot_app.storage.transfer import ImportRejected, check_import_size

log = logging.getLogger(__name__)

CONVERSATION_NOT_FOUND = "That conversation was not found."
NOTHING_TO_ANSWER = "There is no message to answer again."
MESSAGE_NOT_EDITABLE = "That message can no longer be edited."
MESSAGE_NOT_FOUND = "That message was not found."
NO_OTHER_VERSION = "There is no other version that way."
NOTHING_TO_SUMMARIZE = "Send a message first: there is nothing to summarize yet."
NO_SPEECH_SERVICE = "Speech to text is off: set GROQ_API_KEY, or CHATBOT_OPENAI_TRANSCRIPTION_MODEL."
EXPORT_UNAVAILABLE = "Exports are unavailable for a moment; try again shortly."
LINK_NOT_VALID = "This export link is not valid, or has expired: export again from the app."
SHARE_NOT_FOUND = "That link was not found: it may have been revoked already."
IMPORTS_UNAVAILABLE = "Imports are unavailable for a moment; try again shortly."
NO_READ_ALOUD = "Read aloud is off: set GROQ_API_KEY, or CHATBOT_OPENAI_SPEECH_MODEL."
REPLY_NOT_FOUND = "That reply was not found."
BAD_SERVER = "Name a server from the list, and one of its settings: enabled, trusted or default_on, true or false."
MCP_SETTINGS = ("enabled", "trusted", "default_on")
TOOL_CALL_NOT_WAITING = "That tool call is not waiting for an answer (it was answered, or it is not yours)."
NOTHING_TO_READ = "There is nothing in this reply to read aloud."
#: Read aloud counts one message against the rate limits per this many characters read.
SPEECH_CHARS_PER_MESSAGE = 1000
READ_ALOUD_UNAVAILABLE = "Read aloud is unavailable for a moment; try again shortly."
SPEECH_LINK_NOT_VALID = (
    "This link to a reply read aloud is not valid, was used, or has expired: press Read aloud again."
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the owner id their session or key stands for, and their client address (None: unknown)."""

    owner_id: str
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Started:
    """A reply that an action started: its stored turn, and whether a reply being written was stopped first."""

    turn: Turn
    stopped_first: bool = False
    #: The user's message as stored (sent or edited; "" for a regeneration).
    text: str = ""


#: What an export can fail with, each turned into a refusal by _export_refusal.
EXPORT_FAILURES = (ConversationNotFound, InvalidInput, LinksUnavailable)


def _export_refusal(exc: Exception, not_found: str = CONVERSATION_NOT_FOUND) -> Refused:
    if isinstance(exc, ConversationNotFound):
        return Refused(RefusalKind.NOT_FOUND, not_found)
    if isinstance(exc, LinksUnavailable):
        return Refused(RefusalKind.UNAVAILABLE, EXPORT_UNAVAILABLE)
    return Refused(RefusalKind.INVALID, str(exc))


@contextlib.contextmanager
def _not_found_as(message: str = CONVERSATION_NOT_FOUND) -> Iterator[None]:
    """Unknown, foreign and malformed ids look the same to every caller: one refusal, in these words."""
    try:
        yield
    except ConversationNotFound:
        raise Refused(RefusalKind.NOT_FOUND, message) from None


@contextlib.contextmanager
def _message_not_found() -> Iterator[None]:
    """A message that is not in the caller's conversation is not found; a conversation that is not the
    caller's is not found either, in its own words (as a tab, which cannot open it, is told)."""
    try:
        yield
    except MessageNotFound:
        raise Refused(RefusalKind.NOT_FOUND, MESSAGE_NOT_FOUND) from None
    except ConversationNotFound:
        raise Refused(RefusalKind.NOT_FOUND, CONVERSATION_NOT_FOUND) from None


def _as_row_id(raw: object) -> int | None:
    """A database id as a client sent it: a positive int that fits the column (JSON's true is no id)."""
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 2**63 else None


def _row_id(raw: object, not_found: str) -> int:
    """`_as_row_id`, refusing anything else as not found."""
    if (checked := _as_row_id(raw)) is None:
        raise Refused(RefusalKind.NOT_FOUND, not_found)
    return checked


#: The last message a page shows, as its handler passes it: a hint, so anything else is no hint.
_shown = _as_row_id


def _limit_refusal(refusal: Refusal) -> Refused:
    return Refused(RefusalKind.RATE_LIMIT, refusal.message, code=refusal.limit)


def _call_text(call: ToolCall) -> str:
    """A tool call as completion text, for estimates where a provider reports no usage."""
    return call.name + call.arguments


def _quota_refusal(exc: QuotaExceeded) -> Refused:
    return Refused(RefusalKind.QUOTA, str(exc), code="quota_exceeded")


class Actions:
    """The user actions, built once at start-up over the app's services."""

    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        replies: ReplyJobs,
        library: ConversationLibrary,
        shares: ShareLinks,
        accounts: Accounts,
        transcriber: Transcriber | None = None,
        imports: ImportJobs | None = None,
        speaker: Speaker | None = None,
        speech_links: SignedLinks | None = None,
        branches: BranchChanges | None = None,
    ) -> None:
        self.settings = settings
        #: Tells the tabs open on a conversation that its branch was switched.
        self.branches = branches or BranchChanges()
        self.imports = imports or ImportJobs(library, MemoryImportProgress())
        self.accounts = accounts
        self.chat = chat
        self.replies = replies
        self.library = library
        self.shares = shares
        self.transcriber = transcriber
        self.speaker = speaker
        self.speech_links = speech_links

    @property
    def quota(self) -> TokenQuota:
        return self.chat.quota

    # -- admission ------------------------------------------------------------------------------

    async def admit(self, caller: Caller) -> None:
        """Count one provider call against every limit; raises Refused. Every action that calls a model
        passes here first."""
        if refusal := await self.chat.limits.admit(caller.owner_id, caller.address):
            raise _limit_refusal(refusal)
        if self.chat.slots.full:
            raise Refused(RefusalKind.BUSY, describe_error(ErrorKind.BUSY))
        try:
            await self.quota.check(caller.owner_id)
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None

    def message_text(self, raw: object, *, blank_allowed: bool = False) -> str:
        """A message as it would be stored (trimmed); raises Refused(INVALID). Doors that show a message
        before it is stored check it with this first."""
        if blank_allowed and isinstance(raw, str) and not raw.strip():
            return ""
        try:
            return clean_message(raw, self.settings.max_message_chars)
        except InvalidInput as exc:
            raise Refused(RefusalKind.INVALID, str(exc)) from None

    @staticmethod
    def _conversation_id(raw: object) -> str:
        if not is_conversation_id(raw):
            raise Refused(RefusalKind.NOT_FOUND, CONVERSATION_NOT_FOUND)
        return raw  # type: ignore[return-value]

    async def _stop_running(self, owner_id: str, conversation_id: str, *, on_path: bool = False) -> bool:
        """Stop the conversation's replies still being written (those on its current path only, if `on_path`:
        the ones an edit or a regeneration replaces) and wait until each has stored its end.

        True if there was one; raises Refused(NOT_FOUND).
        """
        with _not_found_as():
            running = await self.chat.streaming_replies(owner_id, conversation_id, on_path=on_path)
        if running:
            await self.replies.stop_and_wait(running)
        return bool(running)

    # -- turns: send, regenerate (and retry), edit, stop ---------------------------------------------

    async def send(
        self,
        caller: Caller,
        conversation_id: str | None,
        text: object,
        *,
        settings: ChatSettings | None = None,
        overrides: Mapping[str, object] | None = None,
        attachments: Sequence[PreparedAttachment] = (),
        batch: bool = False,
        title: bool = True,
        parent_id: object = None,
        shown_id: object = None,
    ) -> Started:
        """Store the user's message (and its checked files) and start the reply.

        `conversation_id` None starts a new conversation. `settings` replace the conversation's stored
        settings; `overrides` change only the fields they name. Files may be sent without a word.
        """
        message = self.message_text(text, blank_allowed=bool(attachments))
        existing = None if conversation_id is None else self._conversation_id(conversation_id)
        parent = None if parent_id is None else _row_id(parent_id, MESSAGE_NOT_FOUND)
        if parent is not None and existing is None:
            raise Refused(RefusalKind.INVALID, "A message to follow belongs to a conversation: name it too.")
        await self.admit(caller)
        with _message_not_found():
            if overrides:
                base = settings
                if base is None:
                    base = (
                        ChatSettings()
                        if existing is None
                        else await self.chat.conversation_settings(caller.owner_id, existing)
                    )
                settings = replace(base, **overrides)  # type: ignore[arg-type]
            try:
                turn = await self.chat.start_turn(
                    caller.owner_id, existing, message, settings, attachments, parent, _shown(shown_id)
                )
            except (AttachmentRejected, InvalidInput) as exc:
                raise Refused(RefusalKind.INVALID, str(exc)) from None
        await self.replies.start(turn, batch=batch, suggest_title=title, address=caller.address)
        return Started(turn, text=message)

    async def regenerate(
        self, caller: Caller, conversation_id: object, *, batch: bool = False, shown_id: object = None
    ) -> Started:
        """Answer the last user message again, as a new version of the reply (the old ones stay); a reply being
        written is stopped (and stored) first."""
        checked = self._conversation_id(conversation_id)
        await self.admit(caller)
        stopped = await self._stop_running(caller.owner_id, checked, on_path=True)
        with _not_found_as(NOTHING_TO_ANSWER):
            turn = await self.chat.start_regeneration(caller.owner_id, checked, _shown(shown_id))
        await self.replies.start(turn, batch=batch, address=caller.address)
        return Started(turn, stopped)

    #: Retry (on a failed or stopped reply) is answering the same message again.
    retry = regenerate

    async def edit(
        self, caller: Caller, conversation_id: object, message_id: object, text: object, *, batch: bool = False
    ) -> Started:
        """Answer a new version of a user message (the old one and what followed it stay, as another branch); a
        reply being written is stopped (and stored) first."""
        message = self.message_text(text)
        checked, edited = self._conversation_id(conversation_id), _row_id(message_id, MESSAGE_NOT_EDITABLE)
        await self.admit(caller)
        stopped = await self._stop_running(caller.owner_id, checked, on_path=True)
        with _not_found_as(MESSAGE_NOT_EDITABLE):
            turn = await self.chat.start_edit(caller.owner_id, checked, edited, message)
        await self.replies.start(turn, batch=batch, address=caller.address)
        return Started(turn, stopped, message)

    async def switch_version(self, caller: Caller, conversation_id: object, message_id: object, step: object) -> None:
        """Show the previous (`step` -1) or next (+1) version of a message, and the newest path below it; stored,
        so every tab and device shows that branch. A reply being written on the branch left goes on."""
        checked, version_of = self._conversation_id(conversation_id), _row_id(message_id, MESSAGE_NOT_FOUND)
        if isinstance(step, bool) or step not in (-1, 1):
            raise Refused(RefusalKind.INVALID, NO_OTHER_VERSION)
        with _message_not_found():
            switched = await self.chat.switch_version(caller.owner_id, checked, version_of, -1 if step == -1 else 1)
        if not switched:
            raise Refused(RefusalKind.INVALID, NO_OTHER_VERSION)
        await self.branches.announce(checked)

    async def show_branch(self, caller: Caller, conversation_id: object, message_id: object) -> None:
        """Make the newest path through the message the conversation's current one (the API's leaf switch)."""
        checked, through = self._conversation_id(conversation_id), _row_id(message_id, MESSAGE_NOT_FOUND)
        with _message_not_found():
            await self.chat.show_branch(caller.owner_id, checked, through)
        await self.branches.announce(checked)

    async def fork(self, caller: Caller, conversation_id: object, message_id: object) -> str:
        """ "Branch in new chat": a new conversation with a copy of the path up to the message, files included;
        its id. It writes as much as a message's worth of history, so it counts against the message limits; a
        copy that ends on a question is answered at once, so that one is admitted as a model call."""
        checked, at = self._conversation_id(conversation_id), _row_id(message_id, MESSAGE_NOT_FOUND)
        with _message_not_found():
            if await self.chat.message_role(caller.owner_id, checked, at) == "user":
                await self.admit(caller)
            elif refusal := await self.chat.limits.admit(caller.owner_id, caller.address):
                raise _limit_refusal(refusal)
            fork = await self.chat.fork(caller.owner_id, checked, at)
        if fork.turn is not None:
            await self.replies.start(fork.turn, address=caller.address)
        return fork.conversation_id

    async def stop(self, caller: Caller, reply_id: object) -> None:
        """Stop one of the caller's replies wherever its job runs (a reply that has ended is left as it is)."""
        reply_id = _row_id(reply_id, REPLY_NOT_FOUND)
        if not await self.chat.owns_reply(caller.owner_id, reply_id):
            raise Refused(RefusalKind.NOT_FOUND, REPLY_NOT_FOUND)
        await self.replies.stop(reply_id)

    async def answer_tool_call(self, caller: Caller, reply_id: object, call_id: object, approve: object) -> None:
        """Approve once (True) or deny (False) a tool call of the caller's that waits, wherever its job runs."""
        reply_id = _row_id(reply_id, TOOL_CALL_NOT_WAITING)
        if (
            not isinstance(call_id, str)
            or not 0 < len(call_id) <= 128
            or not isinstance(approve, bool)
            or (storable(call_id) != call_id)
        ):
            raise Refused(RefusalKind.INVALID, "Answer a tool call with its id and true (approve) or false (deny).")
        if not await self.chat.answer_tool_call(caller.owner_id, reply_id, call_id, approve):
            raise Refused(RefusalKind.NOT_FOUND, TOOL_CALL_NOT_WAITING)
        self.replies.tools.answered(reply_id, call_id)  # its job, if it runs here, goes on at once

    # -- the conversation: clear, delete, summarize, end session, share -------------------------------

    async def clear(self, caller: Caller, conversation_id: object) -> bool:
        """Delete the conversation's messages (and summary); True if a reply being written was stopped first."""
        return await self._after_stopping(caller, conversation_id, self.library.clear)

    async def delete(self, caller: Caller, conversation_id: object) -> bool:
        """Delete the conversation, its messages and its share links; True if a reply was stopped first."""
        return await self._after_stopping(caller, conversation_id, self.library.delete)

    async def _after_stopping(
        self, caller: Caller, conversation_id: object, change: Callable[[str, str], Awaitable[object]]
    ) -> bool:
        """Stop (and store) the conversation's running replies, on every branch, then make `change`; whether a
        reply was stopped."""
        checked = self._conversation_id(conversation_id)
        stopped = await self._stop_running(caller.owner_id, checked)
        with _not_found_as():
            await change(caller.owner_id, checked)
        return stopped

    async def summarize(self, caller: Caller, conversation_id: object) -> str:
        """Ask the model for a summary, stored on the conversation; raises Refused or ProviderError."""
        checked = self._conversation_id(conversation_id)
        await self.admit(caller)
        try:
            with _not_found_as():
                return await self.chat.summarize(caller.owner_id, checked)
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None
        except ProviderError as exc:
            if exc.kind == ErrorKind.BAD_REQUEST and exc.detail == "nothing to summarize yet":
                raise Refused(RefusalKind.INVALID, NOTHING_TO_SUMMARIZE) from None
            raise

    #: "End session": the summary is stored, then the door starts a fresh chat.
    end_session = summarize

    async def share(self, caller: Caller, conversation_id: object) -> str:
        """A read-only link to the conversation as it is now; returns its token (shown once)."""
        checked = self._conversation_id(conversation_id)
        return await self.shares.create(caller.owner_id, checked)

    async def share_links(self, caller: Caller, conversation_id: object | None = None) -> list[SharedLink]:
        """The caller's live share links (of one conversation, if given), newest first."""
        checked = None if conversation_id is None else self._conversation_id(conversation_id)
        return await self.shares.links(caller.owner_id, checked)

    async def revoke_share(self, caller: Caller, share_id: object) -> None:
        """Revoke one of the caller's share links: its page and its files answer like unknown ones from now on.

        Unknown, foreign, already revoked and malformed ids alike are refused as not found, changing nothing.
        """
        if not await self.shares.revoke(caller.owner_id, share_id):
            raise Refused(RefusalKind.NOT_FOUND, SHARE_NOT_FOUND)

    # -- the library: import, export ------------------------------------------------------------------

    async def _admit_import(self, caller: Caller, data: bytes) -> None:
        """An import's admission: its size, then the limits per identity and per address."""
        try:
            check_import_size(len(data), self.library.max_import_bytes)
        except ImportRejected as exc:
            raise Refused(RefusalKind.TOO_LARGE, f"Nothing was imported: {exc}") from None
        if refusal := await self.chat.limits.admit_import(caller.owner_id, caller.address):
            raise _limit_refusal(refusal)

    async def import_file(self, caller: Caller, data: bytes) -> ImportSummary:
        """Import our JSON or ChatGPT's export, all or nothing, and wait for it to end; limited per identity
        and per address."""
        await self._admit_import(caller, data)
        try:
            return await self.library.import_file(caller.owner_id, data)
        except ImportRejected as exc:
            raise Refused(RefusalKind.INVALID, f"Nothing was imported: {exc}") from None

    async def start_import(self, caller: Caller, data: bytes) -> ImportProgress:
        """Start importing our JSON or ChatGPT's export as a job of its own (all or nothing, as import_file),
        within the same limits; one at a time per identity. Its progress: `import_progress`."""
        try:
            if await self.imports.running(caller.owner_id):  # before it counts against the limits
                raise Refused(RefusalKind.BUSY, ALREADY_RUNNING)
            await self._admit_import(caller, data)
            return await self.imports.start(caller.owner_id, data)
        except ImportAlreadyRunning:
            raise Refused(RefusalKind.BUSY, ALREADY_RUNNING) from None
        except ImportsUnavailable as exc:
            log.warning("imports are unavailable: %s", exc)
            raise Refused(RefusalKind.UNAVAILABLE, IMPORTS_UNAVAILABLE) from None

    async def import_progress(self, caller: Caller) -> ImportProgress | None:
        """The caller's import: running, or ended a short while ago; None for none."""
        return await self.imports.progress(caller.owner_id)

    def watch_import(self, caller: Caller) -> AsyncIterator[ImportProgress | None]:
        """Each new progress of the caller's import, until it ends (or its job is gone)."""
        return self.imports.watch(caller.owner_id)

    async def export_link(self, caller: Caller, conversation_id: object | None, export_format: str = "json") -> str:
        """A short-lived link (a backend path) to download an export from, for the page: one conversation as
        Markdown ("md") or our JSON ("json"), or everything (`conversation_id` None, JSON)."""
        checked = None if conversation_id is None else self._conversation_id(conversation_id)
        try:
            return await self.library.export_link(caller.owner_id, checked, export_format)
        except EXPORT_FAILURES as exc:
            raise _export_refusal(exc) from None

    async def export(self, caller: Caller, conversation_id: object, export_format: str) -> ExportStream:
        """One conversation as Markdown ("md") or our JSON ("json"), streamed as it is read."""
        checked = self._conversation_id(conversation_id)
        try:
            return await self.library.export(caller.owner_id, checked, export_format)
        except EXPORT_FAILURES as exc:
            raise _export_refusal(exc) from None

    async def export_by_link(self, token: str) -> ExportStream:
        """The export a link names, streamed: the link's token is the only credential (it names its owner)."""
        try:
            export = await self.library.export_by_link(token)
        except EXPORT_FAILURES as exc:
            raise _export_refusal(exc, not_found=LINK_NOT_VALID) from None
        if export is None:
            raise Refused(RefusalKind.NOT_FOUND, LINK_NOT_VALID)
        return export

    # -- admin ----------------------------------------------------------------------------------------

    async def set_user_disabled(self, admin_id: int, user_id: int, disabled: bool) -> None:
        """Disable (or enable) a user; a disabled user's replies being written are stopped (and stored)."""
        try:
            await self.accounts.set_disabled(admin_id, user_id, disabled)
        except NotAllowed as exc:
            raise Refused(RefusalKind.FORBIDDEN, str(exc)) from None
        if disabled:
            running = await self.chat.owners_streaming_replies(owner_id_of(user_id))
            if running:
                await self.replies.stop_and_wait(running)

    async def add_mcp_server(self, admin_id: int, form: dict[str, Any]) -> None:
        """An admin adds an MCP server: checked as CHATBOT_MCP_SERVERS entries are (its URL again at each
        connection); its header values name environment variables, so no secret is stored."""
        headers = form.get("headers") or "{}"
        try:
            entry = {
                "name": form.get("name"),
                "url": form.get("url"),
                "headers": json.loads(headers) if isinstance(headers, str) and len(headers) <= 4_000 else headers,
                "default_on": form.get("default_on") in ("on", True),
                "trusted": form.get("trusted") in ("on", True),
            }
            [server] = parse_mcp_servers(json.dumps([entry]))
        except (ValueError, TypeError) as exc:
            raise Refused(RefusalKind.INVALID, str(exc) if isinstance(exc, ValueError) else BAD_SERVER) from None
        # An admin must not be able to send the app's own secrets (GROQ_API_KEY, ...), or another server's, to a
        # server they name: its variables carry its own name.
        prefix = "MCP_" + server.name.upper().replace("-", "_") + "_"
        if foreign := [variable for variable in server.headers.values() if not variable.startswith(prefix)]:
            raise Refused(
                RefusalKind.INVALID,
                f"Header variables of this server must start with {prefix} (not {foreign[0]}): set the secret "
                "in such a variable on the server.",
            )
        if self.chat.tools.is_configured(server.name):
            raise Refused(RefusalKind.INVALID, f"“{server.name}” is a server of CHATBOT_MCP_SERVERS already.")
        row = McpServerRow(
            name=server.name,
            url=server.url,
            headers=json.dumps(server.headers),
            default_on=server.default_on,
            trusted=server.trusted,
        )
        await self._as_admin_action(self.accounts.add_mcp_server(admin_id, row))

    async def change_mcp_server(self, admin_id: int, name: object, setting: object, value: object) -> None:
        if not isinstance(name, str) or setting not in MCP_SETTINGS or not isinstance(value, bool):
            raise Refused(RefusalKind.INVALID, BAD_SERVER)
        await self._as_admin_action(self.accounts.change_mcp_server(admin_id, name, **{str(setting): value}))

    async def remove_mcp_server(self, admin_id: int, name: object) -> None:
        if not isinstance(name, str):
            raise Refused(RefusalKind.INVALID, BAD_SERVER)
        await self._as_admin_action(self.accounts.remove_mcp_server(admin_id, name))

    @staticmethod
    async def _as_admin_action(change: Awaitable[None]) -> None:
        try:
            await change
        except NotAllowed as exc:
            raise Refused(RefusalKind.FORBIDDEN, str(exc)) from None

    # -- voice ----------------------------------------------------------------------------------------

    async def transcribe(self, caller: Caller, filename: str, data: bytes, language: str | None = None) -> str:
        """The text spoken in an audio file, counted against the limits and (by its seconds) the quota."""
        if self.transcriber is None:
            raise Refused(RefusalKind.UNAVAILABLE, NO_SPEECH_SERVICE)
        try:
            self.transcriber.check(filename, data)
        except TranscriptionRejected as exc:
            too_large = len(data) > self.transcriber.max_bytes
            raise Refused(RefusalKind.TOO_LARGE if too_large else RefusalKind.INVALID, str(exc)) from None
        await self.admit(caller)
        try:
            reservation = await self.quota.reserve(caller.owner_id, audio_token_bound(len(data)), 0)
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None
        transcript: Transcript | None = None
        try:
            async with self.chat.limits.slot():
                transcript = await self.transcriber.transcribe(filename, data, language)
        finally:  # counted by its seconds; without a reported duration, what was held; a failure counts 0
            if transcript is None:
                tokens = 0
            elif transcript.duration_s is None:
                tokens = reservation.prompt_tokens
            else:
                tokens = audio_tokens(transcript.duration_s)
            await self.quota.settle(reservation, Spent(self.transcriber.model, tokens, 0))
        return transcript.text

    async def read_aloud(self, caller: Caller, reply_id: object) -> str:
        """A link (a backend path) that plays one of the caller's replies read aloud, counted against the limits
        now (the link is used once); the quota is held when it plays."""
        speaker, links = self._speech()
        checked = self._reply_id(reply_id)
        await self.admit(caller)
        pieces, _ = await self._pieces_to_read(speaker, caller.owner_id, checked)
        # Each piece is a call to the speech service: a long reply counts as one message per
        # SPEECH_CHARS_PER_MESSAGE read, so the rate limits bound them for callers with no quota too.
        for _ in range(1, math.ceil(sum(len(p) for p in pieces) / SPEECH_CHARS_PER_MESSAGE)):
            await self.admit(caller)
        try:
            await self.quota.check(caller.owner_id, speech_tokens(sum(len(p) for p in pieces)))
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None
        try:
            return speech_url(await links.seal([caller.owner_id, checked]))
        except LinksUnavailable:
            raise Refused(RefusalKind.UNAVAILABLE, READ_ALOUD_UNAVAILABLE) from None

    async def speech_by_link(self, token: object) -> AsyncIterator[bytes]:
        """The reply a link names, read aloud as one WAV stream: the link's token is the only credential.

        The whole reply's tokens are held first; its first piece is synthesized before this returns (so a
        failure is still an HTTP status), the rest while it plays. It settles to the pieces synthesized.
        Raises Refused or ProviderError.
        """
        speaker, links = self._speech()
        if not isinstance(token, str):
            raise Refused(RefusalKind.NOT_FOUND, SPEECH_LINK_NOT_VALID)
        try:
            sealed = await links.unseal(token)
        except LinksUnavailable:
            raise Refused(RefusalKind.UNAVAILABLE, READ_ALOUD_UNAVAILABLE) from None
        match sealed:
            case [str(owner_id), int(reply_id)]:
                pass
            case _:
                raise Refused(RefusalKind.NOT_FOUND, SPEECH_LINK_NOT_VALID)
        used = hashlib.sha256(token.encode()).hexdigest()
        if not await self.chat.limits.claim_once(f"speech/{used}", SPEECH_LINK_TTL_S):
            raise Refused(RefusalKind.NOT_FOUND, SPEECH_LINK_NOT_VALID)
        pieces, voice = await self._pieces_to_read(speaker, owner_id, reply_id)
        try:
            reservation = await self.quota.reserve(owner_id, speech_tokens(sum(len(p) for p in pieces)), 0)
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None
        spoken = 0

        async def synthesize(text: str) -> bytes:
            nonlocal spoken
            async with self.chat.limits.slot():
                audio = await speaker.synthesize(text, voice)
            spoken += len(text)
            return audio

        try:
            first = await synthesize(pieces[0])
        except BaseException:
            await self.quota.settle(reservation, Spent(speaker.model, 0, 0))
            raise
        return self._spoken(joined_wav(first, pieces[1:], synthesize), reservation, speaker.model, lambda: spoken)

    async def _spoken(
        self, audio: AsyncIterator[bytes], reservation: Reservation, model: str, spoken: Callable[[], int]
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in audio:
                yield chunk
        finally:  # the end, a failed piece, or a listener who left: what was synthesized counts
            try:
                await self.quota.settle(reservation, Spent(model, speech_tokens(spoken()), 0))
            except Exception:
                log.exception("could not settle a reservation of %s", reservation.owner_id)

    def _speech(self) -> tuple[Speaker, SignedLinks]:
        if self.speaker is None or self.speech_links is None:
            raise Refused(RefusalKind.UNAVAILABLE, NO_READ_ALOUD)
        return self.speaker, self.speech_links

    @staticmethod
    def _reply_id(raw: object) -> int:
        return _row_id(raw, REPLY_NOT_FOUND)

    async def _pieces_to_read(self, speaker: Speaker, owner_id: str, reply_id: int) -> tuple[list[str], str]:
        """What is read of the owner's reply, piece by piece, and the voice; raises Refused."""
        found = await self.chat.reply_to_read(owner_id, reply_id)
        if found is None:
            raise Refused(RefusalKind.NOT_FOUND, REPLY_NOT_FOUND)
        text, voice = found
        settings = self.settings
        # Markdown parsing is pure Python: a long reply is parsed off the event loop.
        pieces = await asyncio.to_thread(pieces_to_read, text, settings.speech_max_chars, settings.speech_chunk_chars)
        if not pieces:
            raise Refused(RefusalKind.INVALID, NOTHING_TO_READ)
        return pieces, speaker.voice_for(voice)

    # -- stateless completions (/v1) ---------------------------------------------------------------------

    async def complete(
        self, caller: Caller, provider: ChatProvider, context: list[ChatMessage], options: GenerationOptions
    ) -> Completion:
        """One whole completion, counted and held against the quota; raises Refused or ProviderError."""
        await self.admit(caller)
        reservation = await self._reserve(caller, context, options)
        completion: Completion | None = None
        try:
            async with self.chat.limits.slot():
                completion = await provider.complete(context, replace(options, max_tokens=reservation.max_tokens))
        finally:
            usage = completion.usage if completion is not None else None
            text = "".join([completion.text, *map(_call_text, completion.tool_calls)]) if completion else ""
            await self._settle(reservation, options.model, context, usage, text)
        return completion

    async def stream(
        self, caller: Caller, provider: ChatProvider, context: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ProviderEvent]:
        """A streamed completion, counted and held against the quota until it ends or the client hangs up.

        Admission happens before the first event is asked for (so a refusal can still be an HTTP status).
        """
        await self.admit(caller)
        reservation = await self._reserve(caller, context, options)
        return self._streamed(reservation, provider, context, replace(options, max_tokens=reservation.max_tokens))

    async def _streamed(
        self, reservation: Reservation, provider: ChatProvider, context: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ProviderEvent]:
        streamed: list[str] = []
        usage: Usage | None = None
        try:
            async with self.chat.limits.slot():
                async for event in provider.stream(context, options):
                    match event:
                        case TextDelta(text) | ReasoningDelta(text):
                            streamed.append(text)
                        case ToolCall():
                            streamed.append(_call_text(event))
                        case Usage():
                            usage = event
                    yield event
        finally:  # the end, an error, or a client that hung up: settle all the same
            await self._settle(reservation, options.model, context, usage, "".join(streamed))

    async def _reserve(self, caller: Caller, context: list[ChatMessage], options: GenerationOptions) -> Reservation:
        bound = prompt_token_bound(context, options.tools)
        try:
            return await self.quota.reserve(caller.owner_id, bound, options.max_tokens)
        except QuotaExceeded as exc:
            raise _quota_refusal(exc) from None

    async def _settle(
        self, reservation: Reservation, model: str, context: list[ChatMessage], usage: Usage | None, text: str
    ) -> None:
        estimate = context_tokens(context)
        try:
            await self.quota.settle(
                reservation, Spent.of(reservation, model, usage, prompt_estimate=estimate, streamed=text)
            )
        except Exception:  # accounting must never lose the answer itself
            log.exception("could not settle a reservation of %s", reservation.owner_id)
