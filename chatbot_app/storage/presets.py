"""Saved system-prompt presets, per owner."""

from __future__ import annotations

from sqlmodel import Session, col, select

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
