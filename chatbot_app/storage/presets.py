"""Saved system-prompt presets, per owner."""

from __future__ import annotations

from sqlmodel import Session, col, select, update

from chatbot_app.storage.models import PromptPreset


def list_presets(session: Session, owner_id: str) -> list[PromptPreset]:
    query = select(PromptPreset).where(PromptPreset.owner_id == owner_id).order_by(col(PromptPreset.name))
    return list(session.exec(query).all())


def save_preset(session: Session, owner_id: str, name: str, prompt: str) -> PromptPreset:
    """Create the preset, or replace the prompt of the owner's preset with that name."""
    query = select(PromptPreset).where(PromptPreset.owner_id == owner_id, PromptPreset.name == name)
    preset = session.exec(query).first() or PromptPreset(owner_id=owner_id, name=name, prompt=prompt)
    preset.prompt = prompt
    session.add(preset)
    session.flush()
    return preset


def move_presets(session: Session, from_owner: str, to_owner: str) -> None:
    """Give `from_owner`'s presets to `to_owner`, but for those whose name `to_owner` has already: they stay."""
    taken = select(PromptPreset.name).where(PromptPreset.owner_id == to_owner)
    session.exec(
        update(PromptPreset)
        .where(col(PromptPreset.owner_id) == from_owner, col(PromptPreset.name).not_in(taken))
        .values(owner_id=to_owner)
    )
