"""A second process for the reply-job tests: follow (or stop, then follow) a reply through Redis.

Usage: python reply_follower.py REDIS_URL PREFIX REPLY_ID follow|stop [CURSOR]
Prints one JSON line: the text it assembled (from CURSOR on, if given), the status it saw end the
reply, how many frames.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chatbot_app.services.reply_jobs import ReplyResult, apply
from chatbot_app.services.reply_log import START, RedisReplyLog, follow


async def main(url: str, prefix: str, reply_id: int, action: str, cursor: str = START) -> None:
    log = RedisReplyLog(url, prefix=prefix)
    result = ReplyResult()
    async with asyncio.timeout(30):
        async for batch in follow(log, reply_id, cursor):
            apply(result, batch.events)
            if action == "stop" and result.text:
                await log.request_stop(reply_id)
                action = "stopped"
    await log.aclose()
    status = result.finished.status if result.finished else None
    print(json.dumps({"text": result.text, "finished": status, "frames": result.frames}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:6]))
