"""accounts: users, sessions, personal API keys, share links, daily usage

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

New tables only: existing conversations keep their anonymous owner ids and stay valid. A signed-in
user owns rows as owner_id "user:<id>", so no existing column changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def _user_fk() -> sa.Column:
    return sa.Column("user_id", sa.Integer(), sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", AutoString(length=320), nullable=True),
        sa.Column("password_hash", AutoString(length=255), nullable=True),
        sa.Column("role", AutoString(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("daily_token_quota", sa.Integer(), nullable=True),
        sa.Column("oidc_issuer", AutoString(length=255), nullable=True),
        sa.Column("oidc_subject", AutoString(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email", name="uq_app_user_email"),
        sa.UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_app_user_oidc_issuer_subject"),
    )
    op.create_table(
        "user_session",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_fk(),
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="uq_user_session_token_hash"),
    )
    op.create_index("ix_user_session_user_id", "user_session", ["user_id"])
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_fk(),
        sa.Column("name", AutoString(length=80), nullable=False),
        sa.Column("key_hash", AutoString(length=64), nullable=False),
        sa.Column("prefix", AutoString(length=16), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash", name="uq_api_key_key_hash"),
    )
    op.create_index("ix_api_key_user_id", "api_key", ["user_id"])
    op.create_table(
        "share_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", AutoString(length=64), nullable=False),
        sa.Column("conversation_id", AutoString(length=32), nullable=False),
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="uq_share_link_token_hash"),
    )
    op.create_index("ix_share_link_owner_id", "share_link", ["owner_id"])
    op.create_index("ix_share_link_conversation_id", "share_link", ["conversation_id"])
    op.create_table(
        "daily_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_fk(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", AutoString(length=128), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "day", "model", name="uq_daily_usage_user_id_day_model"),
    )
    op.create_index("ix_daily_usage_user_id", "daily_usage", ["user_id"])
    op.create_index("ix_daily_usage_day", "daily_usage", ["day"])


def downgrade() -> None:
    op.drop_index("ix_daily_usage_day", table_name="daily_usage")
    op.drop_index("ix_daily_usage_user_id", table_name="daily_usage")
    op.drop_table("daily_usage")
    op.drop_index("ix_share_link_conversation_id", table_name="share_link")
    op.drop_index("ix_share_link_owner_id", table_name="share_link")
    op.drop_table("share_link")
    op.drop_index("ix_api_key_user_id", table_name="api_key")
    op.drop_table("api_key")
    op.drop_index("ix_user_session_user_id", table_name="user_session")
    op.drop_table("user_session")
    op.drop_table("app_user")
