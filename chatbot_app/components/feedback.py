"""The "Copied" confirmation: shown after any copy button, fading by itself (CSS), announced politely."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.feedback import CopyFeedbackState


def copied_confirmation() -> rx.Component:
    return rx.box(
        rx.cond(
            CopyFeedbackState.copies > 0,
            rx.hstack(
                rx.icon("check", size=16, aria_hidden="true"),
                rx.text(CopyFeedbackState.copied_label, size="2", weight="medium", as_="span"),
                align="center",
                spacing="2",
                # A new key for each copy restarts the fade.
                key=CopyFeedbackState.copies.to_string(),
                custom_attrs={"data-testid": "copied"},
                class_name="copied-toast",
            ),
        ),
        role="status",
        aria_live="polite",
        class_name="copied-region",
    )
