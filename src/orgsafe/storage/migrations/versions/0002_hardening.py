"""Forced row security on every org-keyed table, password changes, login throttle.

Revision ID: 0002
Revises: 0001
"""

from alembic import context, op

revision = "0002"
down_revision = "0001"

SESSION = "NULLIF(current_setting('app.session_hash', true), '')"

SCHEMA = f"""
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;

-- Ends every other session of the user whose live token this transaction holds:
-- only someone presenting a session can end that user's others.
CREATE FUNCTION end_other_sessions() RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH mine AS (
        SELECT user_id, token_hash FROM public.sessions
        WHERE token_hash = {SESSION} AND expires_at > now()
    ), gone AS (
        DELETE FROM public.sessions s USING mine
        WHERE s.user_id = mine.user_id AND s.token_hash <> mine.token_hash
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
REVOKE ALL ON FUNCTION end_other_sessions() FROM PUBLIC;
-- The function runs as the owner, which forced row security would otherwise hold
-- to the caller's own session.
CREATE POLICY sessions_owner_maintenance ON sessions TO CURRENT_USER USING (true);

-- Failed logins per account (hash of the email) and per client address.
CREATE TABLE login_throttle (
    key text PRIMARY KEY CHECK (key ~ '^(account|address):'),
    failures integer NOT NULL CHECK (failures >= 0),
    window_started_at timestamptz NOT NULL,
    blocked_until timestamptz
);
"""

GRANTS = """
GRANT EXECUTE ON FUNCTION end_other_sessions() TO {role};
GRANT UPDATE (password_hash, password_changed_at) ON users TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO {role};
"""


def upgrade() -> None:
    role = '"' + context.config.attributes["app_role"].replace('"', '""') + '"'
    op.execute(SCHEMA)
    op.execute(GRANTS.format(role=role))
