"""SIGKILL a backend of `make prod`'s topology during a reply (or restart a peer), and record what the tab shows.

Used by tests/e2e/test_backend_kills.py (which asserts on each outcome) and bench/kill_bench.py
(which prints figures over many). One kill:

1. opens a tab (a new page of one browser identity) and has one exchange in a new conversation;
2. sends a message whose reply the fake server holds open, before its first token or after 40 of
   its 80 tokens, and waits until the tab shows all of it that was sent;
3. places the tab's websocket: on the backend that runs the job, or on the other one;
4. SIGKILLs the backend that holds the job, the tab's websocket, or both; the clock starts here;
5. waits for the tab to show the reply's end (`interrupted` when its job died with the backend,
   `complete` when the job lived on), then sends a new message from the composer and waits until
   the server has taken it;
6. reads the stored reply, and starts the killed backend again (as a service manager would).

`run_peer_restart` does the same around a restart of Redis or PostgreSQL instead of a kill: the
reply, held mid-stream, is let go right after the restart, and must end `complete` in the tab with
no one acting.

Each reply's words are numbered (k<kill>w<n>), so "the text shown is kept" is an exact comparison
of word lists, whatever badges or buttons surround them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from sqlalchemy import create_engine, text

from deploy.run_prod import Topology
from tests.e2e.prod_cluster import connections, move_websocket, wait_for_new_connection
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, Hold

REPLY_WORDS = 80
#: A mid-stream kill lands after this many of the reply's words have been shown.
SHOWN_BEFORE_KILL = 40
#: How long anything may take before the kill counts it as not happening (the goals are far below).
DEADLINE_S = 60.0
CONNECTION_TOAST = "Cannot connect to server"

Holder = Literal["job and tab", "job", "tab"]
Moment = Literal["before the first token", "mid-stream"]
HOLDERS: tuple[Holder, ...] = ("job and tab", "job", "tab")
MOMENTS: tuple[Moment, ...] = ("before the first token", "mid-stream")

# The assistant bubbles on the page, oldest first: [status, text].
_REPLIES = """() => [...document.querySelectorAll('[data-role=assistant]')].map(e => [e.dataset.status, e.innerText])"""
_TOAST_SHOWN = f"""() => [...document.querySelectorAll('[data-sonner-toast]')]
    .some(t => t.innerText.includes({json.dumps(CONNECTION_TOAST)}))"""


@dataclass(frozen=True)
class Kill:
    """What the killed backend holds (the reply's job, the tab's websocket, or both), and when it dies."""

    holds: Holder
    moment: Moment

    @property
    def kills_job(self) -> bool:
        return self.holds != "tab"

    @property
    def moves_tab(self) -> bool:
        """The tab's websocket is moved off the job's backend before the kill."""
        return self.holds != "job and tab"

    def __str__(self) -> str:
        return f"the killed backend holds the {self.holds}, {self.moment}"


def kill_plan(count: int) -> list[Kill]:
    """`count` kills, going round every combination of holder and moment."""
    combinations = [Kill(holds, moment) for holds in HOLDERS for moment in MOMENTS]
    return list(itertools.islice(itertools.cycle(combinations), count))


@dataclass
class KillOutcome:
    kill: Kill
    #: The reply's words the tab showed at the kill, and once the reply had ended there.
    shown: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    ended_status: str = ""
    stored_status: str = ""
    stored: list[str] = field(default_factory=list)
    identity_kept: bool = False
    conversation_kept: bool = False
    #: Seconds from the kill: to the reply's end shown in the tab; to a new message taken by the server.
    ended_s: float | None = None
    composer_s: float | None = None
    toast_left: bool = False
    #: What went wrong, in words, for a test's message or the benchmark's report.
    problems: list[str] = field(default_factory=list)

    @property
    def lost_shown_text(self) -> bool:
        """Whether any word the tab had shown is missing from the reply's end, in the tab or stored."""
        return self.ended[: len(self.shown)] != self.shown or self.stored[: len(self.shown)] != self.shown

    @property
    def expected_status(self) -> str:
        return "interrupted" if self.kill.kills_job else "complete"


def reply_text(number: int) -> str:
    return " ".join(f"k{number}w{i}" for i in range(REPLY_WORDS))


def _words(number: int, content: str) -> list[str]:
    return re.findall(rf"\bk{number}w\d+\b", content)


def _replies(page: Any) -> list[tuple[str, str]]:
    return [tuple(reply) for reply in page.evaluate(_REPLIES)]


def _wait(page: Any, predicate: str, arg: Any = None, timeout_s: float = DEADLINE_S) -> Any:
    """Poll a JS predicate (a function of `arg`) until it returns a truthy value, and return that value;
    None (not an exception) if it does not in time.

    Polled from here with `evaluate`, which the devtools protocol runs whatever the page's CSP says; the
    page's own polling (`wait_for_function`) compiles the predicate in the page, which the CSP refuses.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the page navigating meanwhile: ask again
            if value := page.evaluate(predicate, arg):
                return value
        time.sleep(0.02)
    return None


def _wait_or_fail(page: Any, predicate: str, what: str) -> Any:
    if not (value := _wait(page, predicate)):
        raise AssertionError(f"{what} did not happen within {DEADLINE_S:g} s")
    return value


def instance_of(url: str) -> str:
    with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
        return json.load(response)["instance"]


def wait_until_nginx_uses_both(prod: Topology, timeout_s: float = DEADLINE_S) -> None:
    """After a backend started again: nginx leaves it out for a while after a failure; wait until it is back."""
    expected = {instance_of(f"http://127.0.0.1:{port}") for port in prod.config.backend_ports}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while seen != expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx answered only from {seen} of {expected}")
        with contextlib.suppress(OSError):
            seen.add(instance_of(prod.url))
        time.sleep(0.05)


def wait_until_state_unlocked(prod: Topology, page: Any, timeout_s: float = DEADLINE_S) -> None:
    """Until no backend is in the middle of one of the tab's events (its state lock in Redis is free).

    A backend that dies holding a tab's lock keeps that tab waiting for the lock's expiry (Reflex's
    REFLEX_REDIS_LOCK_EXPIRATION, 10 s) before it shows anything more; a websocket moved by dropping it
    may first land on the job's backend and leave an event (its hydration) running there. The kills
    here land between the tab's events, so that each checks the job's death, the same way every time.
    """
    token = page.evaluate("() => window.sessionStorage.getItem('token')")
    lock_key = f"{token}_lock"
    client = redis.Redis.from_url(prod.config.redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while client.exists(lock_key):
            if time.monotonic() > deadline:
                raise AssertionError(f"the tab's state stayed locked for {timeout_s:g} s")
            time.sleep(0.01)
    finally:
        client.close()


def listed_in_sidebar(page: Any, conversation_id: str) -> bool:
    """Whether the sidebar lists the conversation, once the tab has settled (a tab whose state the
    server lost loads its page again, and its sidebar with it)."""
    listed = f"() => !!document.querySelector(\"[data-testid=conversation-item][data-id='{conversation_id}']\")"
    return bool(_wait(page, listed, timeout_s=10))


def stored_replies(database_url: str, conversation_id: str) -> list[tuple[str, str, str]]:
    """(role, status, content) of a conversation's messages, straight from the database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT role, status, content FROM message WHERE conversation_id = :id ORDER BY id"),
                {"id": conversation_id},
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def identity_of(page: Any) -> str:
    """Who the tab is: the session cookie when accounts are on, else the browser's anonymous identity."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("chatbot_session") or page.evaluate("localStorage.getItem('chatbot_identity')") or ""


def run_kill(
    prod: Topology,
    fake: FakeLLMServer,
    context: Any,
    kill: Kill,
    number: int,
    *,
    earlier: bool = True,
    between_events: bool = True,
) -> KillOutcome:
    """One kill (see the module's docstring); both backends must be up. The tab is closed at the end.

    `earlier`: the conversation has an exchange before the reply that is killed (else that reply is
    its first). The earlier reply's title reaches the tab through the backend that ran it, which takes
    the tab's state lock for it; if the tab has moved to the other backend by then and this one dies
    holding that lock (Reflex's opportunistic lock), the tab waits for the lock's expiry (10 s) before
    it shows anything more. The benchmark leaves that to chance, as users do; the kill-loop test goes
    without it, so that each of its kills checks the same thing every time.

    `between_events`: the kill waits until no backend is inside one of the tab's events (see
    `wait_until_state_unlocked`); the benchmark passes False, leaving that to chance too.
    """
    outcome = KillOutcome(kill)
    before = connections(prod)
    page = context.new_page()
    page.set_default_timeout(DEADLINE_S * 1000)
    try:
        page.goto(prod.url)
        job_backend = wait_for_new_connection(prod, before)
        page.wait_for_selector("#model-select option", state="attached")
        identity = identity_of(page)

        base = int(earlier)  # assistant messages before the reply that is killed
        if earlier:  # an exchange that makes the conversation: the kill must leave it, and this, in place
            page.fill("#chat-input", f"Kill {number}: hello")
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-role=assistant][data-status=complete]")

        hold = Hold(after_tokens=SHOWN_BEFORE_KILL if kill.moment == "mid-stream" else 0)
        fake.enqueue_stream(Behaviour(text=reply_text(number), hold=hold))
        first_message = f"Kill {number}: hello" if earlier else f"Kill {number}: a long answer please"
        page.fill("#chat-input", f"Kill {number}: a long answer please")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/c/[0-9a-f]{32}$"), wait_until="commit")
        url = page.url
        conversation_id = url.rsplit("/", 1)[1]
        if not hold.reached.wait(DEADLINE_S):
            raise AssertionError("the reply's request never reached the fake server")
        # The words the reply shows, once it shows all that was sent, read in the same look as the check.
        shown_all = f"""() => {{
            const all = [...document.querySelectorAll('[data-role=assistant]')];
            const last = all[all.length - 1];
            const words = all.length > {base} && last.dataset.status === 'streaming'
                && (last.innerText.match(/\\bk{number}w\\d+\\b/g) || []);
            return words && words.length >= {hold.after_tokens} ? {{words}} : null;
        }}"""
        shown = _wait_or_fail(page, shown_all, "the tab showing the reply so far")
        if kill.moves_tab:
            move_websocket(prod, page, 1 - job_backend)
            shown = _wait_or_fail(page, shown_all, "the tab showing the reply again from the other backend")
        outcome.shown = shown["words"]

        victim = job_backend if kill.kills_job else 1 - job_backend
        if between_events:
            wait_until_state_unlocked(prod, page)
        killed_at = time.monotonic()
        prod.backends[victim].stop(signal.SIGKILL)
        if not kill.kills_job:
            hold.release()  # the job lives on: its reply goes on to its end

        ended = """(base) => {
            const all = [...document.querySelectorAll('[data-role=assistant]')];
            return all.length > base && all[all.length - 1].dataset.status !== 'streaming';
        }"""
        if _wait(page, ended, base):
            outcome.ended_s = time.monotonic() - killed_at
            outcome.ended_status, content = _replies(page)[-1]
            outcome.ended = _words(number, content)
        else:
            outcome.problems.append(f"the reply still showed as {_replies(page)[-1:]} {DEADLINE_S:g} s after the kill")

        # The composer: a new message is taken (its reply appears), and answered.
        page.fill("#chat-input", f"Kill {number}: still there?")
        page.keyboard.press("Enter")
        if _wait(page, "(base) => document.querySelectorAll('[data-role=assistant]').length >= base + 2", base):
            outcome.composer_s = time.monotonic() - killed_at
            complete = "document.querySelectorAll('[data-role=assistant][data-status=complete]').length"
            answered = f"(wanted) => {complete} >= wanted"
            if not _wait(page, answered, base + 1 + int(outcome.ended_status == "complete")):
                outcome.problems.append("the message sent after the kill was taken but never answered")
        else:
            outcome.problems.append("a message sent after the kill was never taken")
        outcome.toast_left = bool(page.evaluate(_TOAST_SHOWN))

        user_texts = page.eval_on_selector_all("[data-role=user]", "els => els.map(e => e.innerText.trim())")
        in_sidebar = listed_in_sidebar(page, conversation_id)
        outcome.identity_kept = identity_of(page) == identity and in_sidebar
        outcome.conversation_kept = page.url == url and first_message in user_texts
        stored = stored_replies(prod.config.database_url, conversation_id)
        if len(stored) > 2 * base + 1:
            _, outcome.stored_status, content = stored[2 * base + 1]
            outcome.stored = _words(number, content)
        else:
            outcome.problems.append(f"the conversation holds {len(stored)} messages, fewer than it had at the kill")
        if not outcome.identity_kept:
            outcome.problems.append(f"identity or sidebar lost (sidebar lists the conversation: {in_sidebar})")
        if not outcome.conversation_kept:
            outcome.problems.append(f"conversation lost: the tab is at {page.url}, showing {user_texts}")
    finally:
        page.close()
        for backend in prod.backends:
            if not backend.running():
                backend.stop()
                backend.start()
        wait_until_nginx_uses_both(prod)
    return outcome


@dataclass
class RestartOutcome:
    """A peer (Redis, PostgreSQL) restarted while a reply was held open mid-stream, then let go on."""

    peer: str
    shown: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    ended_status: str = ""
    stored_status: str = ""
    stored: list[str] = field(default_factory=list)
    #: Every message of the conversation stored before the restart, and still stored after it.
    earlier_kept: bool = False
    identity_kept: bool = False
    conversation_kept: bool = False
    #: Seconds from the restart's start: to the reply's end shown in the tab (with no one acting); to a
    #: new message taken by the server.
    ended_s: float | None = None
    composer_s: float | None = None
    problems: list[str] = field(default_factory=list)


def run_peer_restart(
    prod: Topology, fake: FakeLLMServer, context: Any, peer: str, restart: Any, number: int
) -> RestartOutcome:
    """Hold a reply open mid-stream, restart a peer (`restart()`), let the reply go on, and watch the tab."""
    outcome = RestartOutcome(peer)
    page = context.new_page()
    page.set_default_timeout(DEADLINE_S * 1000)
    try:
        page.goto(prod.url)
        page.wait_for_selector("#model-select option", state="attached")
        identity = identity_of(page)
        page.fill("#chat-input", f"Restart {number}: hello")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/c/[0-9a-f]{32}$"), wait_until="commit")
        url = page.url
        conversation_id = url.rsplit("/", 1)[1]
        page.wait_for_selector("[data-role=assistant][data-status=complete]")

        hold = Hold(after_tokens=SHOWN_BEFORE_KILL)
        fake.enqueue_stream(Behaviour(text=reply_text(number), hold=hold))
        page.fill("#chat-input", f"Restart {number}: a long answer please")
        page.keyboard.press("Enter")
        if not hold.reached.wait(DEADLINE_S):
            raise AssertionError("the reply's request never reached the fake server")
        shown = _wait_or_fail(
            page,
            f"""() => {{
                const words = document.querySelector('[data-role=assistant][data-status=streaming]')?.innerText
                    .match(/\\bk{number}w\\d+\\b/g) || [];
                return words.length >= {SHOWN_BEFORE_KILL} ? {{words}} : null;
            }}""",
            "the tab showing the reply so far",
        )
        outcome.shown = shown["words"]
        before = stored_replies(prod.config.database_url, conversation_id)

        started_at = time.monotonic()
        restart()
        hold.release()
        ended = f"""() => {{
            const all = [...document.querySelectorAll('[data-role=assistant]')];
            return all.length >= 2 && all[all.length - 1].dataset.status !== 'streaming'
                && (all[all.length - 1].innerText.match(/\\bk{number}w\\d+\\b/g) || []).length > 0;
        }}"""
        if _wait(page, ended):
            outcome.ended_s = time.monotonic() - started_at
            outcome.ended_status, content = _replies(page)[-1]
            outcome.ended = _words(number, content)
        else:
            outcome.problems.append(f"the tab still showed {_replies(page)[-1:]} {DEADLINE_S:g} s after the restart")

        page.fill("#chat-input", f"Restart {number}: still there?")
        page.keyboard.press("Enter")
        if _wait(page, "() => document.querySelectorAll('[data-role=assistant]').length >= 3"):
            outcome.composer_s = time.monotonic() - started_at
        else:
            outcome.problems.append("a message sent after the restart was never taken")
        in_sidebar = listed_in_sidebar(page, conversation_id)
        outcome.conversation_kept = page.url == url and in_sidebar
        outcome.identity_kept = identity_of(page) == identity
        after = stored_replies(prod.config.database_url, conversation_id)
        outcome.earlier_kept = after[: len(before) - 1] == before[:-1]  # all but the reply held open
        if len(after) >= 4:
            _, outcome.stored_status, content = after[3]
            outcome.stored = _words(number, content)
        if not outcome.conversation_kept:
            outcome.problems.append(f"conversation lost: the tab is at {page.url} (sidebar lists it: {in_sidebar})")
    finally:
        page.close()
    return outcome
