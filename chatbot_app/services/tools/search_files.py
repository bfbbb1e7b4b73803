"""`search_files`: the model looks up passages in every document its user has attached, in any conversation.

What a PDF cut to fit the context left out is reachable here. The search is the owner's only (the
owner is matched inside the full-text index, storage.documents).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from chatbot_app.services.tools.toolbox import Tool, ToolOutcome
from chatbot_app.storage.database import Database
from chatbot_app.storage.documents import search_documents
from chatbot_app.storage.search import MARK_END, MARK_START

NAME = "search_files"
MAX_RESULTS = 8
DESCRIPTION = (
    "Search the text of every document (PDF or text file) the user has attached, in any of their "
    "conversations. Returns the best-matching passages with their file names. Use it when the user asks "
    "about their files, or when an attached file was cut to fit the context."
)
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "Words to look for; every word must appear in a passage."},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "description": "At most this many."},
    },
    "required": ["query"],
}


def search_files_tool(db: Database, owner_id: str) -> Tool:
    return Tool(NAME, DESCRIPTION, PARAMETERS, partial(_search, db, owner_id), remote_name=NAME)


async def _search(db: Database, owner_id: str, arguments: dict[str, Any]) -> ToolOutcome:
    query, limit = arguments.get("query"), arguments.get("limit", 5)
    if not isinstance(query, str) or not query.strip():
        return ToolOutcome("Give `query`: the words to look for.", is_error=True)
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = 5
    hits = await db.run(
        lambda session: search_documents(session, owner_id, query[:500], max(1, min(limit, MAX_RESULTS)))
    )
    if not hits:
        return ToolOutcome(f"No passage of the user's files holds every word of {query!r}.")
    passages = [
        f"[{n}] {hit.filename} (part {hit.seq + 1}):\n{hit.text.replace(MARK_START, '').replace(MARK_END, '')}"
        for n, hit in enumerate(hits, 1)
    ]
    return ToolOutcome("\n\n".join(passages))
