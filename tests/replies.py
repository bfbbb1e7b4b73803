"""Run a reply as the app does (a job, followed through its log) and return what a follower saw."""

from __future__ import annotations

from chatbot_app.services.chat_service import ChatService, Turn
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult, apply
from chatbot_app.services.reply_log import Frame, MemoryReplyLog, ReplyEvent


async def run_reply(
    service: ChatService, turn: Turn, *, batch: bool = False, jobs: ReplyJobs | None = None
) -> tuple[ReplyResult, list[ReplyEvent]]:
    """Start `turn`'s job and follow it to its end: the folded result and every event, in order."""
    jobs = jobs or ReplyJobs(service, MemoryReplyLog())
    await jobs.start(turn, batch=batch)
    events: list[ReplyEvent] = []
    async for _, batch_events in jobs.follow(turn.reply_id):
        events += batch_events
    result = ReplyResult()
    apply(result, events)
    return result, events


def frames(events: list[ReplyEvent]) -> list[Frame]:
    """The frames that showed something (a job's log opens with an empty one)."""
    return [e for e in events if isinstance(e, Frame) and (e.text or e.reasoning or e.notice)]


def notices(events: list[ReplyEvent]) -> list[str]:
    """The retry hints shown, in order (each once)."""
    return [e.notice for e in frames(events) if e.notice]
