"""The plain functions behind the everyday UI: day groups, one search row per conversation, the shared page's
messages, a stored reply's tidied fences and its time, the sign-in email's cookie, an image chip's thumbnail."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from chatbot_app.services.attachments import thumbnail_data_url
from chatbot_app.state.auth import refused_email
from chatbot_app.state.library import (
    LAST_WEEK,
    OLDER,
    PINNED,
    TODAY,
    YESTERDAY,
    ConversationItem,
    best_hit_per_conversation,
    group_of,
    grouped,
)
from chatbot_app.state.share import shared_messages
from chatbot_app.state.views import view_of_message
from chatbot_app.storage.models import Message
from chatbot_app.storage.search import SearchHit
from tests.fakes.sample_files import make_image

NOW = datetime(2026, 12, 5, 1, 30, tzinfo=UTC)  # 01:30 UTC


@pytest.mark.parametrize(
    ("updated", "offset_min", "expected"),
    [
        (NOW - timedelta(minutes=5), 0, TODAY),
        (NOW - timedelta(hours=3), 0, YESTERDAY),  # 22:30 UTC the day before
        (NOW - timedelta(hours=3), -180, TODAY),  # UTC+3: 01:30 and 04:30 on the 5th
        (NOW - timedelta(minutes=80), 0, TODAY),  # 00:10 UTC...
        (NOW - timedelta(minutes=80), 60, YESTERDAY),  # ...is 23:10 the day before at UTC-1 (now 00:30 there)
        (NOW - timedelta(days=3), 0, LAST_WEEK),
        (NOW - timedelta(days=7), 0, LAST_WEEK),
        (NOW - timedelta(days=8), 0, OLDER),
        (NOW.replace(tzinfo=None) - timedelta(days=40), 0, OLDER),  # a naive time from the database is UTC
    ],
)
def test_a_conversation_is_grouped_by_its_day_in_the_browsers_time_zone(
    updated: datetime, offset_min: int, expected: str
) -> None:
    assert group_of(False, updated, NOW, offset_min) == expected


def test_pinned_conversations_are_their_own_group_and_each_group_is_headed_once() -> None:
    def item(title: str, age: timedelta, pinned: bool = False) -> ConversationItem:
        return ConversationItem(title, title, pinned, (NOW - age).isoformat())

    rows = grouped(
        [
            item("p", timedelta(days=99), pinned=True),
            item("a", timedelta(minutes=1)),
            item("b", timedelta(minutes=2)),
            item("c", timedelta(days=2)),
            item("d", timedelta(days=30)),
        ],
        NOW,
        0,
    )
    assert [(r.title, r.group, r.group_start) for r in rows] == [
        ("p", PINNED, True),
        ("a", TODAY, True),
        ("b", TODAY, False),
        ("c", LAST_WEEK, True),
        ("d", OLDER, True),
    ]


def test_search_keeps_one_row_per_conversation_with_its_best_message() -> None:
    hits = [
        SearchHit("one", "Zebras", None, None, "\x02Zebras\x03"),  # the title ranks first...
        SearchHit("two", "Other", 7, "user", "a \x02zebra\x03 here"),
        SearchHit("one", "Zebras", 3, "assistant", "the \x02zebra\x03 runs"),  # ...but a message is the better row
        SearchHit("one", "Zebras", 4, "user", "another \x02zebra\x03"),
    ]
    best = best_hit_per_conversation(hits)
    assert [(h.conversation_id, h.message_id) for h in best] == [("one", 3), ("two", 7)]


def test_a_stored_reply_is_shown_with_its_fences_tidied_and_its_time_in_utc() -> None:
    written = datetime(2026, 12, 1, 9, 15)  # naive, as the database returns it
    reply = Message(id=5, role="assistant", content="Here: ```js\nx\n``` done", created_at=written)
    view = view_of_message(reply)
    assert view.content == "Here:\n```js\nx\n```\ndone"
    assert view.created == "2026-12-01T09:15:00+00:00"
    mine = view_of_message(Message(id=4, role="user", content="Here: ```js", created_at=written))
    assert mine.content == "Here: ```js"  # what the user typed is shown as typed


def test_a_shared_snapshot_shows_its_files_on_the_backend_and_drops_foreign_links() -> None:
    snapshot = {
        "messages": [
            {
                "role": "user",
                "content": "Look",
                "files": [
                    {"filename": "a.png", "url": "/api/shared/share-tok/files/0", "is_image": True},
                    {"filename": "evil", "url": "https://evil.example/x", "is_image": False},
                    {"filename": "owner's", "url": "/api/attachments/tok", "is_image": False},
                ],
            },
            {"role": "assistant", "content": "Seen: ```py\nx\n``` ok"},  # an old snapshot: no "files"
        ]
    }
    [sent, reply] = shared_messages(snapshot, "http://api.example:8000/")
    assert [(f.filename, f.url, f.is_image) for f in sent.files] == [
        ("a.png", "http://api.example:8000/api/shared/share-tok/files/0", True)
    ]
    assert reply.files == [] and reply.content.endswith("```\nok")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("chatbot_signin_email=ann%40example.com; chatbot_session=abc", "ann@example.com"),
        ("chatbot_session=abc", ""),
        ("", ""),
        ('chatbot_signin_email="broken', ""),
    ],
)
def test_the_refused_sign_ins_email_is_read_from_its_cookie(header: str, expected: str) -> None:
    assert refused_email(header) == expected


def test_an_image_chips_thumbnail_is_a_small_webp_and_a_broken_image_gets_none() -> None:
    url = thumbnail_data_url(make_image(640, 480))
    assert url.startswith("data:image/webp;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        assert max(image.size) == 64
    assert thumbnail_data_url(b"not an image") == ""
