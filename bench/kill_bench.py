"""Backends killed mid-reply in `make prod`'s topology: what a tab keeps, and how soon it is whole again.

Starts the topology of deploy/run_prod.py on free ports (nginx, two backends, a private redis-server,
a fresh PostgreSQL database, the fake Groq server in this process) and Chromium through Playwright.
Then --kills times (20) one kill of tests/e2e/backend_kills.py, going round every combination of
what the killed backend holds (the reply's job, the tab's websocket, or both) and when it dies
(before the reply's first token, or mid-stream). Each kill's clock starts at the SIGKILL. Prints:

- kills that lost the tab's identity or conversation, or any character the tab had shown (goal 0);
- from the kill to the reply's end shown in the tab (`interrupted`; `complete` when its job lived),
  p50 / p95 / max (goal: p95 <= 10 s for `interrupted`);
- from the kill to a working composer: a message typed and sent is taken by the server (goal p95 <= 5 s).

Then, unless --no-restarts: Redis restarted during a reply, and PostgreSQL (a private server on a
free port, so the machine's own is left alone) restarted during a reply; for each, whether the reply
and the conversation were kept and when the tab could send again.

    .venv/bin/python bench/kill_bench.py [--kills 20] [--auth local|none] [--oplock false|true] [--no-restarts]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.backend_kills import KillOutcome, RestartOutcome, kill_plan, run_kill, run_peer_restart
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live_app import free_port
from tests.e2e.prod_cluster import (
    TRACK_WEBSOCKETS,
    PostgresServer,
    RedisServer,
    new_signed_in_session,
    prod_cluster,
)
from tests.fakes.fake_llm_server import FakeLLMServer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def spread(values: list[float]) -> str:
    if not values:
        return "none measured"
    return f"p50 {statistics.median(values):.1f} s, p95 {percentile(values, 0.95):.1f} s, max {max(values):.1f} s"


def report(outcomes: list[KillOutcome]) -> None:
    lost_identity = [o for o in outcomes if not (o.identity_kept and o.conversation_kept)]
    lost_text = [o for o in outcomes if o.lost_shown_text]
    wrong_end = [o for o in outcomes if o.ended_status != o.expected_status or o.stored_status != o.expected_status]
    interrupted = [o.ended_s for o in outcomes if o.kill.kills_job and o.ended_s is not None]
    completed = [o.ended_s for o in outcomes if not o.kill.kills_job and o.ended_s is not None]
    composer = [o.composer_s for o in outcomes if o.composer_s is not None]
    print(f"\n{len(outcomes)} kills:")
    print(f"  lost the identity or the conversation: {len(lost_identity)}")
    print(f"  lost a character the tab had shown:    {len(lost_text)}")
    print(f"  ended other than expected:             {len(wrong_end)}")
    print(f"  a connection toast left up:            {sum(o.toast_left for o in outcomes)}")
    print(f"  kill -> `interrupted` in the tab ({len(interrupted)} kills of the job's backend): {spread(interrupted)}")
    print(f"  kill -> `complete` in the tab ({len(completed)} kills of the tab's backend only): {spread(completed)}")
    print(f"  kill -> a working composer ({len(composer)} of {len(outcomes)}): {spread(composer)}")
    for outcome in outcomes:
        if outcome.problems:
            print(f"  problems, {outcome.kill}: {'; '.join(outcome.problems)}")


def report_restart(outcome: RestartOutcome) -> None:
    ended = f"{outcome.ended_s:.1f} s" if outcome.ended_s is not None else "never"
    composer = f"{outcome.composer_s:.1f} s" if outcome.composer_s is not None else "never"
    lost = outcome.ended[: len(outcome.shown)] != outcome.shown or outcome.stored[: len(outcome.shown)] != outcome.shown
    print(
        f"{outcome.peer} restarted during a reply: it ended {outcome.ended_status or '?'} in the tab after {ended} "
        f"with no one acting ({len(outcome.ended)} of 80 words; stored {outcome.stored_status or '?'}, "
        f"{len(outcome.stored)} words); earlier messages kept: {outcome.earlier_kept}; identity and conversation "
        f"kept: {outcome.identity_kept and outcome.conversation_kept}; shown text lost: {lost}; "
        f"composer after {composer}" + (f"; {'; '.join(outcome.problems)}" if outcome.problems else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--auth", choices=["local", "none"], default="local", help="CHATBOT_AUTH of the backends")
    parser.add_argument("--no-restarts", action="store_true", help="skip the Redis and PostgreSQL restarts")
    parser.add_argument(
        "--oplock", choices=["true", "false"], default="false", help="REFLEX_OPLOCK_ENABLED (make prod: false)"
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    fake = FakeLLMServer().start()
    redis, postgres = RedisServer(free_port()), PostgresServer(free_port())
    redis.start()
    postgres.start()
    outcomes: list[KillOutcome] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kill_bench_") as workdir,
            prod_cluster(
                Path(workdir), fake, redis, postgres=postgres, CHATBOT_AUTH=args.auth, REFLEX_OPLOCK_ENABLED=args.oplock
            ) as prod,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1100, "height": 800})  # the page's own CSP applies
            context.add_init_script(TRACK_WEBSOCKETS)
            if args.auth == "local":
                token = new_signed_in_session(prod.config.database_url, "kills@example.com")
                context.add_cookies([{"name": "chatbot_session", "value": token, "url": prod.url}])
            print(
                f"CHATBOT_AUTH={args.auth}, REFLEX_OPLOCK_ENABLED={args.oplock}, "
                f"backends on {prod.config.backend_ports}, nginx on {prod.config.port}"
            )
            for number, kill in enumerate(kill_plan(args.kills), start=1):
                outcome = run_kill(prod, fake, context, kill, number, between_events=False)
                outcomes.append(outcome)
                ended = f"{outcome.ended_s:.1f} s" if outcome.ended_s is not None else "never"
                composer = f"{outcome.composer_s:.1f} s" if outcome.composer_s is not None else "never"
                print(
                    f"{number:2d}. {kill}: {outcome.ended_status or '?'} after {ended}, composer after {composer}, "
                    f"shown {len(outcome.shown)} words, kept {len(outcome.ended)} shown / {len(outcome.stored)} stored"
                    + (f"; {'; '.join(outcome.problems)}" if outcome.problems else ""),
                    flush=True,
                )
            report(outcomes)
            outcomes = []
            if not args.no_restarts:
                print()
                for number, (peer, restart) in enumerate((("Redis", redis.restart), ("PostgreSQL", postgres.restart))):
                    report_restart(run_peer_restart(prod, fake, context, peer, restart, 1000 + number))
            browser.close()
    except KeyboardInterrupt:
        print("interrupted: the kills so far follow")
    finally:
        if outcomes:
            report(outcomes)
        redis.stop()
        postgres.close()
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
