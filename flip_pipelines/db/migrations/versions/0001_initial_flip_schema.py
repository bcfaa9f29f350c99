"""initial FLIP schema: every hub table the queue and scheduler use, with FLIP's names

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 00:42:36.596801
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fl_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('log_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('trust', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('fl_client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('log', sa.Text(), nullable=True),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('global_round', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_logs_model_id'), ['model_id'], unique=False)

    op.create_table('fl_metrics',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('trust', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('fl_client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('global_round', sa.Integer(), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('result', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_metrics_model_id'), ['model_id'], unique=False)

    op.create_table('fl_nets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('fl_backend', sa.Enum('NVFLARE', 'FLOWER', name='flbackend'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('endpoint'),
    sa.UniqueConstraint('name')
    )
    op.create_table('models_audit',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('audit_date', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('models_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_audit_model_id'), ['model_id'], unique=False)

    op.create_table('projects',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('creation_timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('trust',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('last_heartbeat', sa.DateTime(timezone=True), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('region', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('api_key_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('fl_kit_slot',
    sa.Column('slot_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('slot_number', sa.Integer(), nullable=False),
    sa.Column('assigned_to_trust_id', sa.Uuid(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assigned_to_trust_id'], ['trust.id'], ),
    sa.PrimaryKeyConstraint('slot_name')
    )
    with op.batch_alter_table('fl_kit_slot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_kit_slot_assigned_to_trust_id'), ['assigned_to_trust_id'], unique=False)

    op.create_table('model',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sa.Enum('PENDING', 'INITIATED', 'PREPARED', 'RUNNING', 'RESULTS_UPLOADED', 'RESULTS_UPLOAD_FAILED', 'ERROR', 'STOPPED', name='modelstatus'), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('creation_timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_project_id'), ['project_id'], unique=False)

    op.create_table('queries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('queries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queries_project_id'), ['project_id'], unique=False)

    op.create_table('fl_job',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('QUEUED', 'IN_PROGRESS', 'COMPLETED', 'DELETED', name='jobstatus'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fl_backend_job_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('num_gpus', sa.Integer(), nullable=True),
    sa.Column('mem_per_gpu_gib', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fl_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_job_model_id'), ['model_id'], unique=False)
        batch_op.create_index('ix_fl_job_status_created_id', ['status', 'created', 'id'], unique=False)

    op.create_table('fl_job_trust',
    sa.Column('fl_job_id', sa.Uuid(), nullable=False),
    sa.Column('trust_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['fl_job_id'], ['fl_job.id'], ),
    sa.PrimaryKeyConstraint('fl_job_id', 'trust_id')
    )
    with op.batch_alter_table('fl_job_trust', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fl_job_trust_trust_id'), ['trust_id'], unique=False)

    op.create_table('fl_scheduler',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('net_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('AVAILABLE', 'BUSY', name='netstatus'), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['fl_job.id'], ),
    sa.ForeignKeyConstraint(['net_id'], ['fl_nets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('net_id')
    )
    with op.batch_alter_table('fl_scheduler', schema=None) as batch_op:
        batch_op.create_index('ix_fl_scheduler_status', ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('fl_scheduler', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_scheduler_status')

    op.drop_table('fl_scheduler')
    with op.batch_alter_table('fl_job_trust', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fl_job_trust_trust_id'))

    op.drop_table('fl_job_trust')
    with op.batch_alter_table('fl_job', schema=None) as batch_op:
        batch_op.drop_index('ix_fl_job_status_created_id')
        batch_op.drop_index(batch_op.f('ix_fl_job_model_id'))

    op.drop_table('fl_job')
    with op.batch_alter_table('queries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queries_project_id'))

    op.drop_table('queries')
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_project_id'))

    op.drop_table('model')
    with op.batch_alter_table('fl_kit_slot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fl_kit_slot_assigned_to_trust_id'))

    op.drop_table('fl_kit_slot')
    op.drop_table('trust')
    op.drop_table('projects')
    with op.batch_alter_table('models_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_audit_model_id'))

    op.drop_table('models_audit')
    op.drop_table('fl_nets')
    with op.batch_alter_table('fl_metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fl_metrics_model_id'))

    op.drop_table('fl_metrics')
    with op.batch_alter_table('fl_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fl_logs_model_id'))

    op.drop_table('fl_logs')
    if op.get_bind().dialect.name == "postgresql":
        for enum_name in ("flbackend", "modelstatus", "jobstatus", "netstatus"):
            op.execute(f"DROP TYPE IF EXISTS {enum_name}")
