"""Orgs, users, memberships, sessions, customers; row-level security; app grants.

Revision ID: 0001
Revises:
"""

from alembic import context, op

revision = "0001"
down_revision = None

SCHEMA = """
CREATE TABLE orgs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    password_hash text NOT NULL,
    default_org_id uuid REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id uuid NOT NULL REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, org_id)
);
CREATE INDEX memberships_org_id_idx ON memberships (org_id);

-- Only the SHA-256 of the cookie's token is stored: a leaked table opens no session.
CREATE TABLE sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id uuid REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE customers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL
        REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE RESTRICT,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email text CHECK (length(email) <= 320),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_org_page_idx ON customers (org_id, created_at, id);
"""

# An unset or empty setting yields NULL, which equals nothing: no row, no error.
ORG = "NULLIF(current_setting('app.org_id', true), '')::uuid"
USER = "NULLIF(current_setting('app.user_id', true), '')::uuid"
SESSION = "NULLIF(current_setting('app.session_hash', true), '')"
LOGIN_EMAIL = "NULLIF(current_setting('app.login_email', true), '')"

POLICIES = f"""
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY customers_org ON customers
    USING (org_id = {ORG}) WITH CHECK (org_id = {ORG});

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
CREATE POLICY orgs_effective ON orgs USING (id = {ORG});

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_self ON users
    USING (id = {USER} OR lower(email) = {LOGIN_EMAIL});

ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
CREATE POLICY memberships_self ON memberships USING (user_id = {USER});

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY sessions_own ON sessions
    USING (token_hash = {SESSION})
    WITH CHECK (token_hash = {SESSION} AND user_id = {USER});
"""

GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON orgs, users, memberships TO {role};
GRANT SELECT, INSERT, DELETE, UPDATE (org_id, last_seen_at) ON sessions TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO {role};
"""


def upgrade() -> None:
    role = '"' + context.config.attributes["app_role"].replace('"', '""') + '"'
    op.execute(SCHEMA)
    op.execute(POLICIES)
    op.execute(GRANTS.format(role=role))
