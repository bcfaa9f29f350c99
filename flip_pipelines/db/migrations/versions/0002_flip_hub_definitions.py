"""FLIP's hub definitions, as at FLIP's Alembic head f5ad2a562fad, for every table the hub uses

A database this creates holds the same tables as a FLIP hub database (names, types, enums, nullability, foreign
keys; no unique constraint FLIP lacks), plus the indexes in ``db.models.EXTRA_INDEXES``. It replaces revision
0001 (this project's first schema), which a database must be recreated from.

Revision ID: 0002
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

# FLIP's queries.queried_trust_ids is uuid[]; SQLite has no arrays
UUID_LIST = sa.JSON().with_variant(postgresql.ARRAY(sa.Uuid()), "postgresql")

revision = '0002'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fl_nets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('fl_backend', sa.Enum('NVFLARE', 'FLOWER', name='flbackend'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('endpoint'),
    sa.UniqueConstraint('name')
    )
    op.create_table('projects',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('creation_timestamp', sa.DateTime(), nullable=False),
    sa.Column('status', sa.Enum('UNSTAGED', 'STAGED', 'APPROVED', name='projectstatus'), nullable=False),
    sa.Column('dicom_to_nifti', sa.Boolean(), nullable=False),
    sa.Column('has_imaging', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('site_config',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('site_config', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_site_config_key'), ['key'], unique=False)

    op.create_table('trust',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('last_heartbeat', sa.DateTime(), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('region', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('api_key_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('services_health', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('services_health_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('fl_kit_slot',
    sa.Column('slot_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('slot_number', sa.Integer(), nullable=False),
    sa.Column('assigned_to_trust_id', sa.Uuid(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['assigned_to_trust_id'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('slot_name')
    )
    with op.batch_alter_table('fl_kit_slot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_kit_slot_assigned_to_trust_id'), ['assigned_to_trust_id'], unique=False)

    op.create_table('model',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sa.Enum('ERROR', 'STOPPED', 'PENDING', 'INITIATED', 'PREPARED', 'RUNNING', 'RESULTS_UPLOADED', 'RESULTS_UPLOAD_FAILED', name='modelstatus'), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=True),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('creation_timestamp', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('queries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('query', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=True),
    sa.Column('queried_trust_ids', UUID_LIST, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('queries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queries_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_queries_project_id'), ['project_id'], unique=False)

    op.create_table('fl_job',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('QUEUED', 'IN_PROGRESS', 'COMPLETED', 'DELETED', name='jobstatus'), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=True),
    sa.Column('completed', sa.DateTime(), nullable=True),
    sa.Column('fl_backend_job_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('num_gpus', sa.Integer(), nullable=True),
    sa.Column('mem_per_gpu_gib', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_job', schema=None) as batch_op:
        batch_op.create_index('ix_fl_job_status_created_id', ['status', 'created', 'id'], unique=False)

    op.create_table('fl_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('log_date', sa.DateTime(), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('trust', sa.Uuid(), nullable=True),
    sa.Column('fl_client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('log', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('global_round', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.ForeignKeyConstraint(['trust'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_logs', schema=None) as batch_op:
        batch_op.create_index('ix_fl_logs_model_id', ['model_id'], unique=False)

    op.create_table('fl_metrics',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('trust', sa.Uuid(), nullable=False),
    sa.Column('fl_client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('global_round', sa.Integer(), nullable=False),
    sa.Column('timestamp', sa.DateTime(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('result', sa.Float(), nullable=False),
    sa.Column('x_label', sqlmodel.sql.sqltypes.AutoString(), server_default='Global Round', nullable=False),
    sa.Column('x_value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.ForeignKeyConstraint(['trust'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_fl_metrics_model_id', ['model_id'], unique=False)

    op.create_table('model_trust_intersect',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('PENDING', 'REQUEST_SENT', 'INITIALISED', name='trustintersectstatus'), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('trust_id', sa.Uuid(), nullable=True),
    sa.Column('fl_client_endpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.ForeignKeyConstraint(['trust_id'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('models_audit',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.Enum('DELETE', 'EDIT', 'PREPARED', 'RUNNING', 'RESULTS_UPLOADED', name='modelauditaction'), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('audit_date', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('models_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_audit_model_id'), ['model_id'], unique=False)

    op.create_table('fl_job_trust',
    sa.Column('fl_job_id', sa.Uuid(), nullable=False),
    sa.Column('trust_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['fl_job_id'], ['fl_job.id'], ),
    sa.ForeignKeyConstraint(['trust_id'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('fl_job_id', 'trust_id')
    )
    op.create_table('fl_scheduler',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('net_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('AVAILABLE', 'BUSY', name='netstatus'), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['fl_job.id'], ),
    sa.ForeignKeyConstraint(['net_id'], ['fl_nets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_scheduler', schema=None) as batch_op:
        batch_op.create_index('ix_fl_scheduler_status', ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('fl_scheduler', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_scheduler_status')

    op.drop_table('fl_scheduler')
    op.drop_table('fl_job_trust')
    with op.batch_alter_table('models_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_audit_model_id'))

    op.drop_table('models_audit')
    op.drop_table('model_trust_intersect')
    with op.batch_alter_table('fl_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_metrics_model_id')

    op.drop_table('fl_metrics')
    with op.batch_alter_table('fl_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_logs_model_id')

    op.drop_table('fl_logs')
    with op.batch_alter_table('fl_job', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_job_status_created_id')

    op.drop_table('fl_job')
    with op.batch_alter_table('queries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queries_project_id'))
        batch_op.drop_index(batch_op.f('ix_queries_created_by'))

    op.drop_table('queries')
    op.drop_table('model')
    with op.batch_alter_table('fl_kit_slot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fl_kit_slot_assigned_to_trust_id'))

    op.drop_table('fl_kit_slot')
    op.drop_table('trust')
    with op.batch_alter_table('site_config', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_site_config_key'))

    op.drop_table('site_config')
    op.drop_table('projects')
    op.drop_table('fl_nets')
