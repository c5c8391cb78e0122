"""Create the schema of the first release

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-05 00:53:47.564057
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.types

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspace",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("base_currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("activity_seq", sa.Integer(), nullable=False),
        sa.Column("activity_head", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("next_po_number", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace")),
    )
    op.create_index(op.f("ix_workspace_name"), "workspace", ["name"], unique=True)

    op.create_table(
        "activity_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("occurred_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_activity_event_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_event")),
        sa.UniqueConstraint("workspace_id", "seq", name=op.f("uq_activity_event_workspace_id_seq")),
    )
    op.create_index("ix_activity_draft", "activity_event", ["workspace_id", "draft_id"], unique=False)
    op.create_index(op.f("ix_activity_event_workspace_id"), "activity_event", ["workspace_id"], unique=False)

    op.create_table(
        "change_counter",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_change_counter_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_change_counter")),
    )
    op.create_table(
        "exchange_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("rate", store.types.ExactDecimal(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("set_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("set_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_exchange_rate_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_rate")),
    )
    op.create_index("ix_exchange_rate_currency", "exchange_rate", ["workspace_id", "currency", "id"], unique=False)
    op.create_index(op.f("ix_exchange_rate_workspace_id"), "exchange_rate", ["workspace_id"], unique=False)

    op.create_table(
        "finder_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("change_version", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("policy_fingerprint", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("refreshed_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_finder_run_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finder_run")),
        sa.UniqueConstraint("workspace_id", "kind", name=op.f("uq_finder_run_workspace_id_kind")),
    )
    op.create_index(op.f("ix_finder_run_workspace_id"), "finder_run", ["workspace_id"], unique=False)

    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_idempotency_record_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
        sa.UniqueConstraint(
            "workspace_id", "principal", "key", name=op.f("uq_idempotency_record_workspace_id_principal_key")
        ),
    )
    op.create_index(op.f("ix_idempotency_record_workspace_id"), "idempotency_record", ["workspace_id"], unique=False)

    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("sku", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("sku_key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("unit_cost", store.types.Fixed6(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_item_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
        sa.UniqueConstraint("workspace_id", "sku_key", name=op.f("uq_item_workspace_id_sku_key")),
    )
    op.create_index(op.f("ix_item_external_ref"), "item", ["external_ref"], unique=False)
    op.create_index(op.f("ix_item_workspace_id"), "item", ["workspace_id"], unique=False)

    op.create_table(
        "location",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_location_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location")),
        sa.UniqueConstraint("workspace_id", "code", name=op.f("uq_location_workspace_id_code")),
    )
    op.create_index(op.f("ix_location_external_ref"), "location", ["external_ref"], unique=False)
    op.create_index(op.f("ix_location_workspace_id"), "location", ["workspace_id"], unique=False)

    op.create_table(
        "supplier",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("contact_email", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_supplier_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier")),
        sa.UniqueConstraint("workspace_id", "code", name=op.f("uq_supplier_workspace_id_code")),
    )
    op.create_index(op.f("ix_supplier_external_ref"), "supplier", ["external_ref"], unique=False)
    op.create_index(op.f("ix_supplier_workspace_id"), "supplier", ["workspace_id"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("record_kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("our_version", sa.Integer(), nullable=False),
        sa.Column("their_version", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("agreed_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_sync_state_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_state")),
        sa.UniqueConstraint(
            "workspace_id",
            "source",
            "record_kind",
            "key",
            name=op.f("uq_sync_state_workspace_id_source_record_kind_key"),
        ),
    )
    op.create_index(op.f("ix_sync_state_workspace_id"), "sync_state", ["workspace_id"], unique=False)

    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("principal_kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("on_behalf_of", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_token_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token")),
    )
    op.create_index(op.f("ix_token_secret_hash"), "token", ["secret_hash"], unique=True)
    op.create_index(op.f("ix_token_workspace_id"), "token", ["workspace_id"], unique=False)

    op.create_table(
        "bin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_bin_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_bin_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bin")),
        sa.UniqueConstraint("location_id", "code", name=op.f("uq_bin_location_id_code")),
    )
    op.create_index(op.f("ix_bin_external_ref"), "bin", ["external_ref"], unique=False)
    op.create_index(op.f("ix_bin_location_id"), "bin", ["location_id"], unique=False)
    op.create_index(op.f("ix_bin_workspace_id"), "bin", ["workspace_id"], unique=False)

    op.create_table(
        "draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("rationale", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("payload_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("created_by_kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("created_by_token_id", sa.Integer(), nullable=True),
        sa.Column("on_behalf_of", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("approval_role", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("policy_rule", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("policy_version", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("auto_execute", sa.Boolean(), nullable=False),
        sa.Column("expires_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("estimated_value", store.types.Fixed6(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("failure_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("decided_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("executed_at", store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_token_id"], ["token.id"], name=op.f("fk_draft_created_by_token_id_token")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_draft_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft")),
    )
    op.create_index(op.f("ix_draft_workspace_id"), "draft", ["workspace_id"], unique=False)
    op.create_index("ix_draft_ws_kind_created", "draft", ["workspace_id", "kind", "created_at"], unique=False)
    op.create_index("ix_draft_ws_status", "draft", ["workspace_id", "status", "id"], unique=False)

    op.create_table(
        "policy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("rule_count", sa.Integer(), nullable=False),
        sa.Column("loaded_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("loaded_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["token.id"], name=op.f("fk_policy_version_token_id_token")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_policy_version_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_version")),
        sa.UniqueConstraint("workspace_id", "version", name=op.f("uq_policy_version_workspace_id_version")),
    )
    op.create_index(op.f("ix_policy_version_workspace_id"), "policy_version", ["workspace_id"], unique=False)

    op.create_table(
        "reorder_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("location_key", sa.Integer(), nullable=False),
        sa.Column("reorder_point", store.types.Fixed6(), nullable=False),
        sa.Column("reorder_quantity", store.types.Fixed6(), nullable=True),
        sa.Column("max_level", store.types.Fixed6(), nullable=True),
        sa.Column("safety_stock", store.types.Fixed6(), nullable=False),
        sa.Column("preferred_supplier_id", sa.Integer(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_reorder_rule_item_id_item")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_reorder_rule_location_id_location")),
        sa.ForeignKeyConstraint(
            ["preferred_supplier_id"], ["supplier.id"], name=op.f("fk_reorder_rule_preferred_supplier_id_supplier")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_reorder_rule_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reorder_rule")),
        sa.UniqueConstraint("item_id", "location_key", name=op.f("uq_reorder_rule_item_id_location_key")),
    )
    op.create_index(op.f("ix_reorder_rule_item_id"), "reorder_rule", ["item_id"], unique=False)
    op.create_index(op.f("ix_reorder_rule_workspace_id"), "reorder_rule", ["workspace_id"], unique=False)

    op.create_table(
        "supplier_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("supplier_sku", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("unit_price", store.types.Fixed6(), nullable=True),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("min_order_qty", store.types.Fixed6(), nullable=False),
        sa.Column("pack_size", store.types.ExactDecimal(length=64), nullable=True),
        sa.Column("lead_time_days", sa.Integer(), nullable=True),
        sa.Column("preferred", sa.Boolean(), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_supplier_item_item_id_item")),
        sa.ForeignKeyConstraint(["supplier_id"], ["supplier.id"], name=op.f("fk_supplier_item_supplier_id_supplier")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_supplier_item_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_item")),
        sa.UniqueConstraint("workspace_id", "external_ref", name=op.f("uq_supplier_item_workspace_id_external_ref")),
    )
    op.create_index("ix_supplier_item_item", "supplier_item", ["workspace_id", "item_id"], unique=False)
    op.create_index(op.f("ix_supplier_item_supplier_id"), "supplier_item", ["supplier_id"], unique=False)
    op.create_index(op.f("ix_supplier_item_workspace_id"), "supplier_item", ["workspace_id"], unique=False)

    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("approver", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("payload_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_approval_draft_id_draft")),
        sa.ForeignKeyConstraint(["token_id"], ["token.id"], name=op.f("fk_approval_token_id_token")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_approval_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
        sa.UniqueConstraint(
            "draft_id",
            "approver",
            "decision",
            "payload_hash",
            name=op.f("uq_approval_draft_id_approver_decision_payload_hash"),
        ),
    )
    op.create_index(op.f("ix_approval_draft_id"), "approval", ["draft_id"], unique=False)
    op.create_index(op.f("ix_approval_workspace_id"), "approval", ["workspace_id"], unique=False)

    op.create_table(
        "count_sheet",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("assignee", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("submitted_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("submitted_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_count_sheet_draft_id_draft")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_count_sheet_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_count_sheet_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_count_sheet")),
    )
    op.create_index(op.f("ix_count_sheet_draft_id"), "count_sheet", ["draft_id"], unique=False)
    op.create_index(op.f("ix_count_sheet_workspace_id"), "count_sheet", ["workspace_id"], unique=False)

    op.create_table(
        "count_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("assignee", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_count_task_bin_id_bin")),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_count_task_draft_id_draft")),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_count_task_item_id_item")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_count_task_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_count_task_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_count_task")),
    )
    op.create_index(op.f("ix_count_task_item_id"), "count_task", ["item_id"], unique=False)
    op.create_index(op.f("ix_count_task_workspace_id"), "count_task", ["workspace_id"], unique=False)

    op.create_table(
        "draft_policy_facts",
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("recorded_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_draft_policy_facts_draft_id_draft")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_draft_policy_facts_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("draft_id", name=op.f("pk_draft_policy_facts")),
    )
    op.create_index(op.f("ix_draft_policy_facts_workspace_id"), "draft_policy_facts", ["workspace_id"], unique=False)

    op.create_table(
        "movement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("quantity", store.types.Fixed6(), nullable=False),
        sa.Column("from_location_id", sa.Integer(), nullable=True),
        sa.Column("from_bin_id", sa.Integer(), nullable=True),
        sa.Column("to_location_id", sa.Integer(), nullable=True),
        sa.Column("to_bin_id", sa.Integer(), nullable=True),
        sa.Column("unit_cost", store.types.Fixed6(), nullable=True),
        sa.Column("reference_kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("reference_id", sa.Integer(), nullable=True),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("occurred_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("recorded_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.CheckConstraint("quantity > 0", name="movement_quantity_positive"),
        sa.ForeignKeyConstraint(["from_bin_id"], ["bin.id"], name=op.f("fk_movement_from_bin_id_bin")),
        sa.ForeignKeyConstraint(
            ["from_location_id"], ["location.id"], name=op.f("fk_movement_from_location_id_location")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_movement_item_id_item")),
        sa.ForeignKeyConstraint(["to_bin_id"], ["bin.id"], name=op.f("fk_movement_to_bin_id_bin")),
        sa.ForeignKeyConstraint(["to_location_id"], ["location.id"], name=op.f("fk_movement_to_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_movement_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_movement")),
        sa.UniqueConstraint("workspace_id", "external_ref", name=op.f("uq_movement_workspace_id_external_ref")),
    )
    op.create_index(op.f("ix_movement_workspace_id"), "movement", ["workspace_id"], unique=False)
    op.create_index("ix_movement_ws_item", "movement", ["workspace_id", "item_id", "id"], unique=False)

    op.create_table(
        "purchase_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("expected_date", sa.Date(), nullable=True),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("issued_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("completed_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_purchase_order_draft_id_draft")),
        sa.ForeignKeyConstraint(["supplier_id"], ["supplier.id"], name=op.f("fk_purchase_order_supplier_id_supplier")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_purchase_order_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order")),
        sa.UniqueConstraint("workspace_id", "number", name=op.f("uq_purchase_order_workspace_id_number")),
    )
    op.create_index(op.f("ix_purchase_order_external_ref"), "purchase_order", ["external_ref"], unique=False)
    op.create_index(op.f("ix_purchase_order_supplier_id"), "purchase_order", ["supplier_id"], unique=False)
    op.create_index(op.f("ix_purchase_order_workspace_id"), "purchase_order", ["workspace_id"], unique=False)

    op.create_table(
        "reservation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("quantity", store.types.Fixed6(), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_reservation_bin_id_bin")),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_reservation_item_id_item")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_reservation_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_reservation_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation")),
        sa.UniqueConstraint("workspace_id", "external_ref", name=op.f("uq_reservation_workspace_id_external_ref")),
    )
    op.create_index(op.f("ix_reservation_workspace_id"), "reservation", ["workspace_id"], unique=False)
    op.create_index("ix_reservation_ws_item", "reservation", ["workspace_id", "item_id", "status"], unique=False)

    op.create_table(
        "stock_level",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("bin_key", sa.Integer(), nullable=False),
        sa.Column("on_hand", store.types.Fixed6(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_stock_level_bin_id_bin")),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_stock_level_item_id_item")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_stock_level_location_id_location")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_stock_level_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_level")),
        sa.UniqueConstraint(
            "item_id", "location_id", "bin_key", name=op.f("uq_stock_level_item_id_location_id_bin_key")
        ),
    )
    op.create_index(op.f("ix_stock_level_item_id"), "stock_level", ["item_id"], unique=False)
    op.create_index(op.f("ix_stock_level_workspace_id"), "stock_level", ["workspace_id"], unique=False)
    op.create_index("ix_stock_level_ws_location", "stock_level", ["workspace_id", "location_id"], unique=False)

    op.create_table(
        "supplier_price_break",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("supplier_item_id", sa.Integer(), nullable=False),
        sa.Column("quantity", store.types.Fixed6(), nullable=False),
        sa.Column("unit_price", store.types.Fixed6(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["supplier_item_id"],
            ["supplier_item.id"],
            name=op.f("fk_supplier_price_break_supplier_item_id_supplier_item"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_supplier_price_break_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_price_break")),
        sa.UniqueConstraint(
            "workspace_id", "external_ref", name=op.f("uq_supplier_price_break_workspace_id_external_ref")
        ),
    )
    op.create_index(
        op.f("ix_supplier_price_break_supplier_item_id"), "supplier_price_break", ["supplier_item_id"], unique=False
    )
    op.create_index(
        op.f("ix_supplier_price_break_workspace_id"), "supplier_price_break", ["workspace_id"], unique=False
    )

    op.create_table(
        "count_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("counted_quantity", store.types.Fixed6(), nullable=False),
        sa.Column("system_quantity", store.types.Fixed6(), nullable=True),
        sa.Column("variance", store.types.Fixed6(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("counted_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("applied_movement_id", sa.Integer(), nullable=True),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["applied_movement_id"], ["movement.id"], name=op.f("fk_count_result_applied_movement_id_movement")
        ),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_count_result_bin_id_bin")),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_count_result_item_id_item")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_count_result_location_id_location")),
        sa.ForeignKeyConstraint(["task_id"], ["count_task.id"], name=op.f("fk_count_result_task_id_count_task")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_count_result_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_count_result")),
        sa.UniqueConstraint("workspace_id", "external_ref", name=op.f("uq_count_result_workspace_id_external_ref")),
    )
    op.create_index("ix_count_result_item", "count_result", ["workspace_id", "item_id", "counted_at"], unique=False)
    op.create_index(op.f("ix_count_result_workspace_id"), "count_result", ["workspace_id"], unique=False)

    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=8000), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("purchase_order_id", sa.Integer(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("queued_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("created_at", store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_outbox_message_draft_id_draft")),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_order.id"],
            name=op.f("fk_outbox_message_purchase_order_id_purchase_order"),
        ),
        sa.ForeignKeyConstraint(["supplier_id"], ["supplier.id"], name=op.f("fk_outbox_message_supplier_id_supplier")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_outbox_message_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_message")),
        sa.UniqueConstraint("workspace_id", "draft_id", name=op.f("uq_outbox_message_workspace_id_draft_id")),
    )
    op.create_index(op.f("ix_outbox_message_workspace_id"), "outbox_message", ["workspace_id"], unique=False)
    op.create_index("ix_outbox_ws_status", "outbox_message", ["workspace_id", "status", "id"], unique=False)

    op.create_table(
        "purchase_order_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("purchase_order_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("supplier_item_id", sa.Integer(), nullable=True),
        sa.Column("quantity_ordered", store.types.Fixed6(), nullable=False),
        sa.Column("quantity_received", store.types.Fixed6(), nullable=False),
        sa.Column("unit_price", store.types.Fixed6(), nullable=True),
        sa.Column("expected_date", sa.Date(), nullable=True),
        sa.Column("destination_location_id", sa.Integer(), nullable=True),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_location_id"],
            ["location.id"],
            name=op.f("fk_purchase_order_line_destination_location_id_location"),
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_purchase_order_line_item_id_item")),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_order.id"],
            name=op.f("fk_purchase_order_line_purchase_order_id_purchase_order"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_item_id"],
            ["supplier_item.id"],
            name=op.f("fk_purchase_order_line_supplier_item_id_supplier_item"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_purchase_order_line_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_line")),
        sa.UniqueConstraint(
            "workspace_id", "external_ref", name=op.f("uq_purchase_order_line_workspace_id_external_ref")
        ),
    )
    op.create_index("ix_po_line_item", "purchase_order_line", ["workspace_id", "item_id"], unique=False)
    op.create_index(
        op.f("ix_purchase_order_line_purchase_order_id"), "purchase_order_line", ["purchase_order_id"], unique=False
    )
    op.create_index(op.f("ix_purchase_order_line_workspace_id"), "purchase_order_line", ["workspace_id"], unique=False)

    op.create_table(
        "transfer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("quantity", store.types.Fixed6(), nullable=False),
        sa.Column("from_location_id", sa.Integer(), nullable=False),
        sa.Column("from_bin_id", sa.Integer(), nullable=True),
        sa.Column("to_location_id", sa.Integer(), nullable=False),
        sa.Column("to_bin_id", sa.Integer(), nullable=True),
        sa.Column("transit_location_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("unit_cost", store.types.Fixed6(), nullable=True),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("shipped_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("shipped_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("ship_movement_id", sa.Integer(), nullable=True),
        sa.Column("received_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("received_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("receive_movement_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="transfer_quantity_positive"),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_transfer_draft_id_draft")),
        sa.ForeignKeyConstraint(["from_bin_id"], ["bin.id"], name=op.f("fk_transfer_from_bin_id_bin")),
        sa.ForeignKeyConstraint(
            ["from_location_id"], ["location.id"], name=op.f("fk_transfer_from_location_id_location")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_transfer_item_id_item")),
        sa.ForeignKeyConstraint(
            ["receive_movement_id"], ["movement.id"], name=op.f("fk_transfer_receive_movement_id_movement")
        ),
        sa.ForeignKeyConstraint(
            ["ship_movement_id"], ["movement.id"], name=op.f("fk_transfer_ship_movement_id_movement")
        ),
        sa.ForeignKeyConstraint(["to_bin_id"], ["bin.id"], name=op.f("fk_transfer_to_bin_id_bin")),
        sa.ForeignKeyConstraint(["to_location_id"], ["location.id"], name=op.f("fk_transfer_to_location_id_location")),
        sa.ForeignKeyConstraint(
            ["transit_location_id"], ["location.id"], name=op.f("fk_transfer_transit_location_id_location")
        ),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_transfer_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer")),
        sa.UniqueConstraint("workspace_id", "number", name=op.f("uq_transfer_workspace_id_number")),
    )
    op.create_index(op.f("ix_transfer_workspace_id"), "transfer", ["workspace_id"], unique=False)
    op.create_index("ix_transfer_ws_status", "transfer", ["workspace_id", "status", "id"], unique=False)

    op.create_table(
        "count_sheet_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("sheet_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("bin_key", sa.Integer(), nullable=False),
        sa.Column("snapshot_quantity", store.types.Fixed6(), nullable=False),
        sa.Column("counted_quantity", store.types.Fixed6(), nullable=True),
        sa.Column("count_result_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_count_sheet_line_bin_id_bin")),
        sa.ForeignKeyConstraint(
            ["count_result_id"], ["count_result.id"], name=op.f("fk_count_sheet_line_count_result_id_count_result")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_count_sheet_line_item_id_item")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_count_sheet_line_location_id_location")
        ),
        sa.ForeignKeyConstraint(
            ["sheet_id"], ["count_sheet.id"], name=op.f("fk_count_sheet_line_sheet_id_count_sheet")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_count_sheet_line_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_count_sheet_line")),
        sa.UniqueConstraint(
            "sheet_id", "item_id", "bin_key", name=op.f("uq_count_sheet_line_sheet_id_item_id_bin_key")
        ),
    )
    op.create_index("ix_count_sheet_line_sheet", "count_sheet_line", ["sheet_id", "line_no"], unique=False)
    op.create_index(op.f("ix_count_sheet_line_workspace_id"), "count_sheet_line", ["workspace_id"], unique=False)

    op.create_table(
        "exception_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("sku", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("location_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=True),
        sa.Column("supplier_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("purchase_order_id", sa.Integer(), nullable=True),
        sa.Column("purchase_order_number", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("purchase_order_line_id", sa.Integer(), nullable=True),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("suggested_draft_kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("first_seen", store.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", store.types.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", store.types.UTCDateTime(), nullable=True),
        sa.Column("dismissed_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("suppressing", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_exception_record_item_id_item")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_exception_record_location_id_location")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_order.id"],
            name=op.f("fk_exception_record_purchase_order_id_purchase_order"),
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_line_id"],
            ["purchase_order_line.id"],
            name=op.f("fk_exception_record_purchase_order_line_id_purchase_order_line"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"], ["supplier.id"], name=op.f("fk_exception_record_supplier_id_supplier")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_exception_record_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_record")),
    )
    op.create_index(
        "ix_exception_fingerprint", "exception_record", ["workspace_id", "fingerprint", "status"], unique=False
    )
    op.create_index("ix_exception_kind", "exception_record", ["workspace_id", "kind", "status", "id"], unique=False)
    op.create_index(op.f("ix_exception_record_workspace_id"), "exception_record", ["workspace_id"], unique=False)

    op.create_table(
        "receiving_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("purchase_order_line_id", sa.Integer(), nullable=False),
        sa.Column("quantity", store.types.Fixed6(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("bin_id", sa.Integer(), nullable=True),
        sa.Column("movement_id", sa.Integer(), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("received_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("external_ref", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.ForeignKeyConstraint(["bin_id"], ["bin.id"], name=op.f("fk_receiving_event_bin_id_bin")),
        sa.ForeignKeyConstraint(["location_id"], ["location.id"], name=op.f("fk_receiving_event_location_id_location")),
        sa.ForeignKeyConstraint(["movement_id"], ["movement.id"], name=op.f("fk_receiving_event_movement_id_movement")),
        sa.ForeignKeyConstraint(
            ["purchase_order_line_id"],
            ["purchase_order_line.id"],
            name=op.f("fk_receiving_event_purchase_order_line_id_purchase_order_line"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_receiving_event_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receiving_event")),
        sa.UniqueConstraint("workspace_id", "external_ref", name=op.f("uq_receiving_event_workspace_id_external_ref")),
    )
    op.create_index(
        op.f("ix_receiving_event_purchase_order_line_id"), "receiving_event", ["purchase_order_line_id"], unique=False
    )
    op.create_index(op.f("ix_receiving_event_workspace_id"), "receiving_event", ["workspace_id"], unique=False)

    op.create_table(
        "draft_exception",
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("exception_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["draft.id"], name=op.f("fk_draft_exception_draft_id_draft")),
        sa.ForeignKeyConstraint(
            ["exception_id"], ["exception_record.id"], name=op.f("fk_draft_exception_exception_id_exception_record")
        ),
        sa.PrimaryKeyConstraint("draft_id", "exception_id", name=op.f("pk_draft_exception")),
    )
    op.create_table(
        "external_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("record_kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("received_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("location_key", sa.Integer(), nullable=False),
        sa.Column("quantity", store.types.Fixed6(), nullable=True),
        sa.Column("value", store.types.Fixed6(), nullable=True),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("exception_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["exception_id"], ["exception_record.id"], name=op.f("fk_external_snapshot_exception_id_exception_record")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_external_snapshot_item_id_item")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_external_snapshot_location_id_location")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspace.id"], name=op.f("fk_external_snapshot_workspace_id_workspace")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_snapshot")),
    )
    op.create_index(op.f("ix_external_snapshot_workspace_id"), "external_snapshot", ["workspace_id"], unique=False)
    op.create_index("ix_snapshot_batch", "external_snapshot", ["workspace_id", "source", "batch_id"], unique=False)
    op.create_index(
        "ix_snapshot_current",
        "external_snapshot",
        ["workspace_id", "is_current", "record_kind", "source", "item_id", "location_key"],
        unique=False,
    )
    op.create_index(
        "ix_snapshot_record",
        "external_snapshot",
        ["workspace_id", "source", "record_kind", "external_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_snapshot_record", table_name="external_snapshot")
    op.drop_index("ix_snapshot_current", table_name="external_snapshot")
    op.drop_index("ix_snapshot_batch", table_name="external_snapshot")
    op.drop_index(op.f("ix_external_snapshot_workspace_id"), table_name="external_snapshot")

    op.drop_table("external_snapshot")
    op.drop_table("draft_exception")
    op.drop_index(op.f("ix_receiving_event_workspace_id"), table_name="receiving_event")
    op.drop_index(op.f("ix_receiving_event_purchase_order_line_id"), table_name="receiving_event")

    op.drop_table("receiving_event")
    op.drop_index(op.f("ix_exception_record_workspace_id"), table_name="exception_record")
    op.drop_index("ix_exception_kind", table_name="exception_record")
    op.drop_index("ix_exception_fingerprint", table_name="exception_record")

    op.drop_table("exception_record")
    op.drop_index(op.f("ix_count_sheet_line_workspace_id"), table_name="count_sheet_line")
    op.drop_index("ix_count_sheet_line_sheet", table_name="count_sheet_line")

    op.drop_table("count_sheet_line")
    op.drop_index("ix_transfer_ws_status", table_name="transfer")
    op.drop_index(op.f("ix_transfer_workspace_id"), table_name="transfer")

    op.drop_table("transfer")
    op.drop_index(op.f("ix_purchase_order_line_workspace_id"), table_name="purchase_order_line")
    op.drop_index(op.f("ix_purchase_order_line_purchase_order_id"), table_name="purchase_order_line")
    op.drop_index("ix_po_line_item", table_name="purchase_order_line")

    op.drop_table("purchase_order_line")
    op.drop_index("ix_outbox_ws_status", table_name="outbox_message")
    op.drop_index(op.f("ix_outbox_message_workspace_id"), table_name="outbox_message")

    op.drop_table("outbox_message")
    op.drop_index(op.f("ix_count_result_workspace_id"), table_name="count_result")
    op.drop_index("ix_count_result_item", table_name="count_result")

    op.drop_table("count_result")
    op.drop_index(op.f("ix_supplier_price_break_workspace_id"), table_name="supplier_price_break")
    op.drop_index(op.f("ix_supplier_price_break_supplier_item_id"), table_name="supplier_price_break")

    op.drop_table("supplier_price_break")
    op.drop_index("ix_stock_level_ws_location", table_name="stock_level")
    op.drop_index(op.f("ix_stock_level_workspace_id"), table_name="stock_level")
    op.drop_index(op.f("ix_stock_level_item_id"), table_name="stock_level")

    op.drop_table("stock_level")
    op.drop_index("ix_reservation_ws_item", table_name="reservation")
    op.drop_index(op.f("ix_reservation_workspace_id"), table_name="reservation")

    op.drop_table("reservation")
    op.drop_index(op.f("ix_purchase_order_workspace_id"), table_name="purchase_order")
    op.drop_index(op.f("ix_purchase_order_supplier_id"), table_name="purchase_order")
    op.drop_index(op.f("ix_purchase_order_external_ref"), table_name="purchase_order")

    op.drop_table("purchase_order")
    op.drop_index("ix_movement_ws_item", table_name="movement")
    op.drop_index(op.f("ix_movement_workspace_id"), table_name="movement")

    op.drop_table("movement")
    op.drop_index(op.f("ix_draft_policy_facts_workspace_id"), table_name="draft_policy_facts")

    op.drop_table("draft_policy_facts")
    op.drop_index(op.f("ix_count_task_workspace_id"), table_name="count_task")
    op.drop_index(op.f("ix_count_task_item_id"), table_name="count_task")

    op.drop_table("count_task")
    op.drop_index(op.f("ix_count_sheet_workspace_id"), table_name="count_sheet")
    op.drop_index(op.f("ix_count_sheet_draft_id"), table_name="count_sheet")

    op.drop_table("count_sheet")
    op.drop_index(op.f("ix_approval_workspace_id"), table_name="approval")
    op.drop_index(op.f("ix_approval_draft_id"), table_name="approval")

    op.drop_table("approval")
    op.drop_index(op.f("ix_supplier_item_workspace_id"), table_name="supplier_item")
    op.drop_index(op.f("ix_supplier_item_supplier_id"), table_name="supplier_item")
    op.drop_index("ix_supplier_item_item", table_name="supplier_item")

    op.drop_table("supplier_item")
    op.drop_index(op.f("ix_reorder_rule_workspace_id"), table_name="reorder_rule")
    op.drop_index(op.f("ix_reorder_rule_item_id"), table_name="reorder_rule")

    op.drop_table("reorder_rule")
    op.drop_index(op.f("ix_policy_version_workspace_id"), table_name="policy_version")

    op.drop_table("policy_version")
    op.drop_index("ix_draft_ws_status", table_name="draft")
    op.drop_index("ix_draft_ws_kind_created", table_name="draft")
    op.drop_index(op.f("ix_draft_workspace_id"), table_name="draft")

    op.drop_table("draft")
    op.drop_index(op.f("ix_bin_workspace_id"), table_name="bin")
    op.drop_index(op.f("ix_bin_location_id"), table_name="bin")
    op.drop_index(op.f("ix_bin_external_ref"), table_name="bin")

    op.drop_table("bin")
    op.drop_index(op.f("ix_token_workspace_id"), table_name="token")
    op.drop_index(op.f("ix_token_secret_hash"), table_name="token")

    op.drop_table("token")
    op.drop_index(op.f("ix_sync_state_workspace_id"), table_name="sync_state")

    op.drop_table("sync_state")
    op.drop_index(op.f("ix_supplier_workspace_id"), table_name="supplier")
    op.drop_index(op.f("ix_supplier_external_ref"), table_name="supplier")

    op.drop_table("supplier")
    op.drop_index(op.f("ix_location_workspace_id"), table_name="location")
    op.drop_index(op.f("ix_location_external_ref"), table_name="location")

    op.drop_table("location")
    op.drop_index(op.f("ix_item_workspace_id"), table_name="item")
    op.drop_index(op.f("ix_item_external_ref"), table_name="item")

    op.drop_table("item")
    op.drop_index(op.f("ix_idempotency_record_workspace_id"), table_name="idempotency_record")

    op.drop_table("idempotency_record")
    op.drop_index(op.f("ix_finder_run_workspace_id"), table_name="finder_run")

    op.drop_table("finder_run")
    op.drop_index(op.f("ix_exchange_rate_workspace_id"), table_name="exchange_rate")
    op.drop_index("ix_exchange_rate_currency", table_name="exchange_rate")

    op.drop_table("exchange_rate")
    op.drop_table("change_counter")
    op.drop_index(op.f("ix_activity_event_workspace_id"), table_name="activity_event")
    op.drop_index("ix_activity_draft", table_name="activity_event")

    op.drop_table("activity_event")
    op.drop_index(op.f("ix_workspace_name"), table_name="workspace")

    op.drop_table("workspace")
