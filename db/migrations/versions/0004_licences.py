"""course licences: the catalogue, pools of seats, licences, auto-allocation rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import db.base
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE_LICENCE = sa.text("status = 'ACTIVE'")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def upgrade() -> None:
    op.create_table(
        "courses",
        sa.Column("id", ID, nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("created_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courses")),
        sa.UniqueConstraint("code", name=op.f("uq_courses_code")),
    )
    with op.batch_alter_table("courses") as batch:
        batch.create_index("ix_courses_title", ["title", "id"], unique=False)

    op.create_table(
        "licence_pools",
        sa.Column("id", ID, nullable=False),
        sa.Column("organisation_id", ID, nullable=False),
        sa.Column("course_id", ID, nullable=False),
        sa.Column("seats_total", sa.Integer(), nullable=False),
        sa.Column("seats_used", sa.Integer(), nullable=False),
        sa.Column("updated_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_licence_pools_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_licence_pools_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_pools")),
        sa.UniqueConstraint(
            "organisation_id", "course_id", name=op.f("uq_licence_pools_organisation_id")
        ),
    )

    op.create_table(
        "auto_allocation_rules",
        sa.Column("id", ID, nullable=False),
        sa.Column("organisation_id", ID, nullable=False),
        sa.Column("course_id", ID, nullable=False),
        sa.Column(
            "scope",
            _enum("rule_scope", "LOCATION", "DEPARTMENT", "ENTIRE_COMPANY", "ADVANCED"),
            nullable=False,
        ),
        sa.Column("location_id", ID, nullable=True),
        sa.Column("department_id", ID, nullable=True),
        sa.Column("created_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("deleted_at", db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deleted_by_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_auto_allocation_rules_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_auto_allocation_rules_created_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"],
            ["users.id"],
            name=op.f("fk_auto_allocation_rules_deleted_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_auto_allocation_rules_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_auto_allocation_rules_location_id_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_auto_allocation_rules_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_allocation_rules")),
    )
    with op.batch_alter_table("auto_allocation_rules") as batch:
        batch.create_index(
            "ix_auto_allocation_rules_org", ["organisation_id", "deleted_at"], unique=False
        )

    op.create_table(
        "licences",
        sa.Column("id", ID, nullable=False),
        sa.Column("organisation_id", ID, nullable=False),
        sa.Column("pool_id", ID, nullable=False),
        sa.Column("learner_id", ID, nullable=False),
        sa.Column("course_id", ID, nullable=False),
        sa.Column(
            "status",
            _enum("licence_status", "ACTIVE", "RECALLED", "COMPLETED", "EXPIRED"),
            nullable=False,
        ),
        sa.Column("source", _enum("licence_source", "MANUAL", "RULE"), nullable=False),
        sa.Column("rule_id", ID, nullable=True),
        sa.Column("allocated_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("allocated_by_id", ID, nullable=True),
        sa.Column("launched_at", db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("recalled_at", db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("recalled_by_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["allocated_by_id"], ["users.id"], name=op.f("fk_licences_allocated_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_licences_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_licences_learner_id_learners")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_licences_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["licence_pools.id"], name=op.f("fk_licences_pool_id_licence_pools")
        ),
        sa.ForeignKeyConstraint(
            ["recalled_by_id"], ["users.id"], name=op.f("fk_licences_recalled_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["auto_allocation_rules.id"],
            name=op.f("fk_licences_rule_id_auto_allocation_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licences")),
    )
    with op.batch_alter_table("licences") as batch:
        batch.create_index("ix_licences_learner", ["learner_id", "id"], unique=False)
        batch.create_index(
            "ix_licences_org_course", ["organisation_id", "course_id", "id"], unique=False
        )
        batch.create_index("ix_licences_pool", ["pool_id", "status"], unique=False)
        batch.create_index(
            "uq_licences_active",
            ["learner_id", "course_id"],
            unique=True,
            sqlite_where=ACTIVE_LICENCE,
            postgresql_where=ACTIVE_LICENCE,
        )


def downgrade() -> None:
    op.drop_table("licences")
    op.drop_table("auto_allocation_rules")
    op.drop_table("licence_pools")
    op.drop_table("courses")
