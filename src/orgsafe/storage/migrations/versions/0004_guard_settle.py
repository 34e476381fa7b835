"""The guard's lean path for customer routes.

Revision ID: 0004
Revises: 0003

`guard_settle` answers the one question a customer route asks in the common
case: is this a live session whose org the user still belongs to? If so it
sets `app.session_hash`, `app.user_id` and `app.org_id` for the transaction and
returns the user and the org; otherwise it returns nulls and the guard falls
back to `guard_lookup`, which knows every membership and the default org.

It reads two index entries (the session by hash, the membership by its key)
and returns two uuids, where `guard_lookup` also reads the user, gathers every
membership into an array and returns nine columns. Under load that difference
is most of the guard's cost in PostgreSQL (see docs/scaling.md). It runs with
the caller's rights, so the row policies apply as before; the settings are
made by assignment rather than PERFORM, which plpgsql evaluates without a
query of its own.
"""

from alembic import context, op

revision = "0004"
down_revision = "0003"

FUNCTION = """
CREATE FUNCTION guard_settle(
    presented_hash text,
    idle interval,
    touch_every interval,
    OUT user_id uuid,
    OUT org_id uuid
)
LANGUAGE plpgsql SECURITY INVOKER AS $$
#variable_conflict use_variable
DECLARE
    found_session record;
    unused text;
BEGIN
    unused := set_config('app.session_hash', presented_hash, true);
    SELECT s.id, s.user_id, s.org_id, s.expires_at, s.last_seen_at
        INTO found_session
        FROM public.sessions s WHERE s.token_hash = presented_hash;
    IF NOT FOUND
        OR found_session.expires_at <= now()
        OR found_session.last_seen_at <= now() - idle
    THEN
        -- Unknown or expired: guard_lookup tells which, and deletes.
        RETURN;
    END IF;
    -- Before the update: the sessions policy checks the new row against it.
    unused := set_config('app.user_id', found_session.user_id::text, true);
    IF found_session.last_seen_at < now() - touch_every THEN
        UPDATE public.sessions s SET last_seen_at = now()
            WHERE s.id = found_session.id;
    END IF;
    user_id := found_session.user_id;
    IF found_session.org_id IS NOT NULL AND EXISTS (
        SELECT FROM public.memberships m
        WHERE m.user_id = found_session.user_id AND m.org_id = found_session.org_id
    ) THEN
        org_id := set_config('app.org_id', found_session.org_id::text, true);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION guard_settle(text, interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guard_settle(text, interval, interval) TO {role};
"""


def upgrade() -> None:
    role = '"' + context.config.attributes["app_role"].replace('"', '""') + '"'
    op.execute(FUNCTION.format(role=role))
