"""FLIP's line of Alembic migrations (flip-api, londonaicentre/FLIP, ``flip-api/src/flip_api/db/migrations/versions``):
the baseline ``75c871e682a4`` and every revision on the path to the head ``f5ad2a562fad``, each written here as the
SQL its ``upgrade()`` emits on PostgreSQL, in the order Alembic runs them. ``history.py`` adds FLIP's branches and
builds databases from both.

What this project must treat as FLIP's and leave alone: it is created here only by FLIP's steps, never by this
project's models, so a difference between the two shows up in ``test_flip_hub.py``.
"""

from flip_pipelines.domain.schema import FLIP_HEAD

Step = tuple[str, tuple[str, ...], str]
"""A revision, its down revision(s), and the SQL its ``upgrade()`` runs (nothing, for a merge)."""

BASELINE = """
CREATE TYPE projectstatus AS ENUM ('UNSTAGED', 'STAGED', 'APPROVED');
CREATE TYPE modelstatus AS ENUM ('ERROR', 'STOPPED', 'PENDING', 'INITIATED', 'PREPARED', 'TRAINING_STARTED',
    'RESULTS_UPLOADED', 'RESULTS_UPLOAD_FAILED');
CREATE TYPE jobstatus AS ENUM ('QUEUED', 'IN_PROGRESS', 'COMPLETED', 'DELETED');
CREATE TYPE netstatus AS ENUM ('AVAILABLE', 'BUSY');
CREATE TYPE flbackend AS ENUM ('NVFLARE', 'FLOWER');
CREATE TYPE trustintersectstatus AS ENUM ('PENDING', 'REQUEST_SENT', 'INITIALISED');
CREATE TYPE taskstatus AS ENUM ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED');
CREATE TYPE tasktype AS ENUM ('COHORT_QUERY', 'CREATE_IMAGING', 'DELETE_IMAGING', 'GET_IMAGING_STATUS',
    'REIMPORT_STUDIES', 'UPDATE_USER_PROFILE');
CREATE TYPE xnatimagestatus AS ENUM ('RETRIEVE_STARTED', 'RETRIEVE_COMPLETED', 'RETRIEVE_IN_PROGRESS',
    'RETRIEVE_ERROR', 'CREATED', 'DELETED');
CREATE TYPE fileuploadstatus AS ENUM ('SCANNING', 'COMPLETED', 'ERROR');
CREATE TYPE modelauditaction AS ENUM ('DELETE', 'EDIT', 'PREPARED', 'TRAINING_STARTED', 'RESULTS_UPLOADED');
CREATE TYPE projectauditaction AS ENUM ('DELETE', 'EDIT', 'APPROVE', 'STAGE', 'UNSTAGE');
CREATE TYPE trustauditaction AS ENUM ('REGISTERED', 'DELETED');

CREATE TABLE fl_nets (id UUID NOT NULL, name VARCHAR NOT NULL, endpoint VARCHAR NOT NULL,
    fl_backend flbackend NOT NULL, PRIMARY KEY (id), UNIQUE (endpoint), UNIQUE (name));
CREATE TABLE permission (id UUID NOT NULL, permission_name VARCHAR NOT NULL,
    permission_description VARCHAR NOT NULL, PRIMARY KEY (id));
CREATE TABLE projects (id UUID NOT NULL, name VARCHAR NOT NULL, description VARCHAR NOT NULL,
    owner_id UUID NOT NULL, deleted BOOLEAN NOT NULL, creation_timestamp TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    status projectstatus NOT NULL, dicom_to_nifti BOOLEAN NOT NULL, PRIMARY KEY (id));
CREATE TABLE roles (id UUID NOT NULL, name VARCHAR NOT NULL, description VARCHAR NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE site_banner (id SERIAL NOT NULL, message VARCHAR NOT NULL, link VARCHAR, enabled BOOLEAN NOT NULL,
    PRIMARY KEY (id));
CREATE TABLE site_config (key VARCHAR NOT NULL, value BOOLEAN NOT NULL, PRIMARY KEY (key));
CREATE INDEX ix_site_config_key ON site_config (key);
CREATE TABLE trust (id UUID NOT NULL, name VARCHAR NOT NULL, last_heartbeat TIMESTAMP WITHOUT TIME ZONE,
    code VARCHAR, region VARCHAR, api_key_hash VARCHAR, created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (id));
CREATE TABLE trusts_audit (id UUID NOT NULL, trust_id UUID NOT NULL, trust_name VARCHAR NOT NULL,
    action trustauditaction NOT NULL, modified_by_user_id UUID, audit_date TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (id));
CREATE INDEX ix_trusts_audit_trust_id ON trusts_audit (trust_id);
CREATE TABLE user_profile (user_id UUID NOT NULL, name VARCHAR(255) NOT NULL, organisation VARCHAR(255) NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (user_id));
CREATE TABLE users_audit (id UUID NOT NULL, action VARCHAR NOT NULL, user_id UUID NOT NULL,
    modified_by_user_id UUID NOT NULL, timestamp TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id));
CREATE TABLE fl_kit_slot (slot_name VARCHAR NOT NULL, slot_number INTEGER NOT NULL, assigned_to_trust_id UUID,
    assigned_at TIMESTAMP WITHOUT TIME ZONE, PRIMARY KEY (slot_name), FOREIGN KEY(assigned_to_trust_id)
    REFERENCES trust (id));
CREATE INDEX ix_fl_kit_slot_assigned_to_trust_id ON fl_kit_slot (assigned_to_trust_id);
CREATE TABLE model (id UUID NOT NULL, name VARCHAR NOT NULL, description VARCHAR NOT NULL,
    status modelstatus NOT NULL, deleted BOOLEAN NOT NULL, project_id UUID, owner_id UUID NOT NULL,
    creation_timestamp TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(project_id) REFERENCES projects (id));
CREATE TABLE project_trust_intersect (id UUID NOT NULL, project_id UUID, trust_id UUID, approved BOOLEAN NOT NULL,
    approved_at TIMESTAMP WITHOUT TIME ZONE, PRIMARY KEY (id), FOREIGN KEY(project_id) REFERENCES projects (id),
    FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE INDEX ix_project_trust_intersect_project_id ON project_trust_intersect (project_id);
CREATE INDEX ix_project_trust_intersect_trust_id ON project_trust_intersect (trust_id);
CREATE TABLE project_user_access (id UUID NOT NULL, project_id UUID, user_id UUID NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(project_id) REFERENCES projects (id));
CREATE TABLE projects_audit (id UUID NOT NULL, project_id UUID, action projectauditaction NOT NULL,
    user_id UUID NOT NULL, audit_date TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(project_id) REFERENCES projects (id));
CREATE INDEX ix_projects_audit_project_id ON projects_audit (project_id);
CREATE TABLE queries (id UUID NOT NULL, name VARCHAR NOT NULL, query VARCHAR NOT NULL,
    created TIMESTAMP WITHOUT TIME ZONE NOT NULL, created_by UUID NOT NULL, project_id UUID,
    queried_trust_ids UUID[] NOT NULL, PRIMARY KEY (id), FOREIGN KEY(project_id) REFERENCES projects (id));
CREATE INDEX ix_queries_created_by ON queries (created_by);
CREATE INDEX ix_queries_project_id ON queries (project_id);
CREATE TABLE role_permission (id UUID NOT NULL, role_id UUID NOT NULL, permission_id UUID NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(permission_id) REFERENCES permission (id) ON DELETE CASCADE,
    FOREIGN KEY(role_id) REFERENCES roles (id) ON DELETE CASCADE);
CREATE TABLE trust_task (id UUID NOT NULL, trust_id UUID NOT NULL, task_type tasktype NOT NULL,
    payload VARCHAR NOT NULL, query_id UUID, status taskstatus NOT NULL, result VARCHAR,
    needs_post_processing BOOLEAN NOT NULL, retry_count INTEGER NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, updated_at TIMESTAMP WITHOUT TIME ZONE, PRIMARY KEY (id),
    FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE INDEX ix_trust_task_trust_id ON trust_task (trust_id);
CREATE INDEX ix_trust_task_query_id ON trust_task (query_id);
CREATE TABLE user_role (user_id UUID NOT NULL, role_id UUID NOT NULL, PRIMARY KEY (user_id, role_id),
    FOREIGN KEY(role_id) REFERENCES roles (id));
CREATE TABLE xnat_project_status (id UUID NOT NULL, xnat_project_id UUID NOT NULL, project_id UUID, trust_id UUID,
    retrieve_image_status xnatimagestatus NOT NULL, query_at_creation UUID,
    last_reimport TIMESTAMP WITHOUT TIME ZONE NOT NULL, reimport_count INTEGER NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(project_id) REFERENCES projects (id), FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE TABLE fl_job (id UUID NOT NULL, model_id UUID NOT NULL, status jobstatus NOT NULL,
    created TIMESTAMP WITHOUT TIME ZONE NOT NULL, started TIMESTAMP WITHOUT TIME ZONE,
    completed TIMESTAMP WITHOUT TIME ZONE, fl_backend_job_id VARCHAR, PRIMARY KEY (id),
    FOREIGN KEY(model_id) REFERENCES model (id));
CREATE TABLE fl_logs (id UUID NOT NULL, model_id UUID NOT NULL, log_date TIMESTAMP WITHOUT TIME ZONE,
    success BOOLEAN NOT NULL, trust UUID, fl_client_name VARCHAR, log VARCHAR NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(model_id) REFERENCES model (id), FOREIGN KEY(trust) REFERENCES trust (id));
CREATE TABLE fl_metrics (id UUID NOT NULL, trust UUID NOT NULL, fl_client_name VARCHAR NOT NULL,
    model_id UUID NOT NULL, global_round INTEGER NOT NULL, timestamp TIMESTAMP WITHOUT TIME ZONE,
    label VARCHAR NOT NULL, result FLOAT NOT NULL, PRIMARY KEY (id), FOREIGN KEY(model_id) REFERENCES model (id),
    FOREIGN KEY(trust) REFERENCES trust (id));
CREATE TABLE model_trust_intersect (id UUID NOT NULL, status trustintersectstatus NOT NULL, model_id UUID,
    trust_id UUID, fl_client_endpoint VARCHAR, PRIMARY KEY (id), FOREIGN KEY(model_id) REFERENCES model (id),
    FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE TABLE models_audit (id UUID NOT NULL, model_id UUID, action modelauditaction NOT NULL, user_id UUID,
    audit_date TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id), FOREIGN KEY(model_id) REFERENCES model (id));
CREATE INDEX ix_models_audit_model_id ON models_audit (model_id);
CREATE TABLE query_result (id UUID NOT NULL, query_id UUID NOT NULL, trust_id UUID, data VARCHAR NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(query_id) REFERENCES queries (id), FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE TABLE query_stats (id UUID NOT NULL, stats VARCHAR NOT NULL,
    stats_received TIMESTAMP WITHOUT TIME ZONE NOT NULL, query_id UUID NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(query_id) REFERENCES queries (id), UNIQUE (query_id));
CREATE TABLE uploaded_files (id UUID NOT NULL, name VARCHAR NOT NULL, status fileuploadstatus NOT NULL,
    size FLOAT NOT NULL, type VARCHAR NOT NULL, tag VARCHAR, model_id UUID, PRIMARY KEY (id),
    FOREIGN KEY(model_id) REFERENCES model (id));
CREATE TABLE fl_job_trust (fl_job_id UUID NOT NULL, trust_id UUID NOT NULL, PRIMARY KEY (fl_job_id, trust_id),
    FOREIGN KEY(fl_job_id) REFERENCES fl_job (id), FOREIGN KEY(trust_id) REFERENCES trust (id));
CREATE TABLE fl_scheduler (id UUID NOT NULL, net_id UUID NOT NULL, status netstatus NOT NULL, job_id UUID,
    PRIMARY KEY (id), FOREIGN KEY(job_id) REFERENCES fl_job (id), FOREIGN KEY(net_id) REFERENCES fl_nets (id));
"""

TRUST_SCOPED_USER_ROLES = """
        ALTER TABLE user_role ADD COLUMN id UUID;
        UPDATE user_role SET id = gen_random_uuid() WHERE id IS NULL;
        ALTER TABLE user_role ALTER COLUMN id SET NOT NULL;
        ALTER TABLE user_role ADD COLUMN trust_id UUID;
        ALTER TABLE user_role DROP CONSTRAINT user_role_pkey;
        ALTER TABLE user_role ADD CONSTRAINT user_role_pkey PRIMARY KEY (id);
        ALTER TABLE user_role ADD CONSTRAINT user_role_trust_id_fkey FOREIGN KEY(trust_id) REFERENCES trust (id);
        CREATE INDEX ix_user_role_user_id ON user_role (user_id);
        CREATE INDEX ix_user_role_trust_id ON user_role (trust_id);
        CREATE UNIQUE INDEX uq_user_role_global ON user_role (user_id, role_id) WHERE trust_id IS NULL;
        CREATE UNIQUE INDEX uq_user_role_per_trust ON user_role (user_id, role_id, trust_id)
            WHERE trust_id IS NOT NULL;"""
"""c3a7f1eb9402's upgrade: on FLIP's line, and on the d5b2c8f04a17 branch, where it first revised 40f7934c6419."""

# FLIP's line, in the order ``alembic upgrade`` runs it: (revision, down revision(s), the SQL its upgrade() runs);
# merges run nothing
FLIP_LINE: list[Step] = [
    ("75c871e682a4", (), BASELINE),
    ("23aff57898a0", ("75c871e682a4",), """
        CREATE TYPE accessrequeststatus AS ENUM ('PENDING', 'ENROLLED', 'DISMISSED');
        CREATE TABLE access_request (id UUID NOT NULL, email VARCHAR(255) NOT NULL, full_name VARCHAR(255) NOT NULL,
            reason_for_access VARCHAR NOT NULL, status accessrequeststatus NOT NULL, email_notified BOOLEAN NOT NULL,
            handled_by_user_id UUID, created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id));"""),
    ("8c41d0f2ab5e", ("23aff57898a0",), """
        ALTER TYPE modelstatus RENAME VALUE 'TRAINING_STARTED' TO 'RUNNING';
        ALTER TYPE modelauditaction RENAME VALUE 'TRAINING_STARTED' TO 'RUNNING';"""),
    ("8c4f2b9d31e7", ("23aff57898a0",), """
        ALTER TABLE fl_logs ADD COLUMN event_type VARCHAR;
        ALTER TABLE fl_logs ADD COLUMN global_round INTEGER;
        ALTER TABLE fl_logs ADD COLUMN details JSONB;
        ALTER TABLE fl_logs ALTER COLUMN log DROP NOT NULL;"""),
    ("01af591a5cfc", ("8c41d0f2ab5e", "8c4f2b9d31e7"), ""),
    ("ee61ab95ef2b", ("23aff57898a0",), """
        ALTER TABLE fl_metrics ADD COLUMN x_label VARCHAR DEFAULT 'Global Round' NOT NULL;
        ALTER TABLE fl_metrics ADD COLUMN x_value FLOAT;
        UPDATE fl_metrics SET x_value = global_round;
        ALTER TABLE fl_metrics ALTER COLUMN x_value SET NOT NULL;"""),
    ("292f04be92c4", ("01af591a5cfc", "ee61ab95ef2b"), ""),
    ("2a462371f3c5", ("292f04be92c4",), """
        ALTER TYPE fileuploadstatus ADD VALUE IF NOT EXISTS 'INFECTED';
        ALTER TABLE uploaded_files ADD COLUMN updated_at TIMESTAMP WITHOUT TIME ZONE;"""),
    ("6b786e4503f8", ("2a462371f3c5",), "ALTER TABLE uploaded_files ADD COLUMN bandit_findings JSONB;"),
    ("ffacf260ebc8", ("2a462371f3c5",), """
        ALTER TABLE trust ADD COLUMN services_health JSONB;
        ALTER TABLE trust ADD COLUMN services_health_at TIMESTAMP WITHOUT TIME ZONE;"""),
    ("46edb903e4d1", ("6b786e4503f8", "ffacf260ebc8"), ""),
    ("40f7934c6419", ("46edb903e4d1",), "ALTER TABLE projects ADD COLUMN has_imaging BOOLEAN DEFAULT true NOT NULL;"),
    ("b7e3a1c95d20", ("40f7934c6419",), """
        ALTER TYPE projectauditaction ADD VALUE IF NOT EXISTS 'APPROVE_TRUST';
        ALTER TYPE projectauditaction ADD VALUE IF NOT EXISTS 'DECLINE_TRUST';
        ALTER TABLE projects_audit ADD COLUMN trust_id UUID;
        CREATE TYPE trustapprovalstatus AS ENUM ('PENDING', 'APPROVED', 'DECLINED');
        ALTER TABLE project_trust_intersect ADD COLUMN status trustapprovalstatus;
        ALTER TABLE project_trust_intersect ADD COLUMN decided_by UUID;
        UPDATE project_trust_intersect SET status = CASE WHEN approved THEN 'APPROVED'::trustapprovalstatus
            ELSE 'PENDING'::trustapprovalstatus END;
        ALTER TABLE project_trust_intersect ALTER COLUMN status SET NOT NULL;
        ALTER TABLE project_trust_intersect RENAME COLUMN approved_at TO decided_at;
        ALTER TABLE project_trust_intersect DROP COLUMN approved;"""),
    ("c3a7f1eb9402", ("b7e3a1c95d20",), TRUST_SCOPED_USER_ROLES),
    ("e8c4a2f71b36", ("c3a7f1eb9402",), """
        ALTER TYPE trustauditaction ADD VALUE IF NOT EXISTS 'ADMIN_ADDED';
        ALTER TYPE trustauditaction ADD VALUE IF NOT EXISTS 'ADMIN_REMOVED';
        ALTER TABLE trusts_audit ADD COLUMN subject_user_id UUID;
        CREATE TYPE decisionmaker AS ENUM ('HUB', 'SITE');
        ALTER TABLE project_trust_intersect ADD COLUMN decided_as decisionmaker;
        UPDATE project_trust_intersect SET decided_as = 'HUB' WHERE status <> 'PENDING';
        UPDATE project_trust_intersect i SET status = 'DECLINED' FROM projects p
            WHERE p.id = i.project_id AND p.status = 'APPROVED' AND i.status = 'PENDING';
        DELETE FROM permission WHERE id = 'd24f8b73-6c19-4a5e-b8d0-7f3e2c9a5146';"""),
    (FLIP_HEAD, ("e8c4a2f71b36",), """
        ALTER TABLE fl_job ADD COLUMN num_gpus INTEGER;
        ALTER TABLE fl_job ADD COLUMN mem_per_gpu_gib INTEGER;"""),
]

