"""The guard's session lookup as one function call.

Revision ID: 0003
Revises: 0002

`guard_lookup` does in one statement what the guard did in five: it sets
`app.session_hash`, reads the session, sets `app.user_id`, refreshes the
session's last-seen time, reads the user's memberships and, when asked, sets
`app.org_id` to the session's org if the user still belongs to it. It runs with
the caller's rights (SECURITY INVOKER), so every row policy applies as before;
each statement in it sees the settings the ones before it made.
"""

from alembic import context, op

revision = "0003"
down_revision = "0002"

FUNCTION = """
CREATE FUNCTION guard_lookup(
    presented_hash text,
    idle interval,
    touch_every interval,
    preset_org boolean,
    OUT session_id uuid,
    OUT session_user_id uuid,
    OUT session_org_id uuid,
    OUT session_created_at timestamptz,
    OUT session_expires_at timestamptz,
    OUT live boolean,
    OUT default_org_id uuid,
    OUT member_org_ids uuid[],
    OUT preset_org_id text
) RETURNS SETOF record
LANGUAGE plpgsql SECURITY INVOKER AS $$
#variable_conflict use_variable
DECLARE
    found_session record;
BEGIN
    PERFORM set_config('app.session_hash', presented_hash, true);
    SELECT s.id, s.user_id, s.org_id, s.created_at, s.expires_at, s.last_seen_at
        INTO found_session
        FROM public.sessions s WHERE s.token_hash = presented_hash;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    session_id := found_session.id;
    session_user_id := found_session.user_id;
    session_org_id := found_session.org_id;
    session_created_at := found_session.created_at;
    session_expires_at := found_session.expires_at;
    live := found_session.expires_at > now()
        AND found_session.last_seen_at > now() - idle;
    preset_org_id := '';
    IF NOT live THEN
        -- The caller deletes it; nothing else is set.
        RETURN NEXT;
        RETURN;
    END IF;
    -- Before the update: the sessions policy checks the new row against it.
    PERFORM set_config('app.user_id', found_session.user_id::text, true);
    IF found_session.last_seen_at < now() - touch_every THEN
        UPDATE public.sessions s SET last_seen_at = now()
            WHERE s.id = found_session.id;
    END IF;
    SELECT u.default_org_id,
           ARRAY(SELECT m.org_id FROM public.memberships m WHERE m.user_id = u.id)
        INTO default_org_id, member_org_ids
        FROM public.users u WHERE u.id = found_session.user_id;
    IF preset_org AND found_session.org_id = ANY(member_org_ids) THEN
        preset_org_id := set_config(
            'app.org_id', found_session.org_id::text, true
        );
    END IF;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION guard_lookup(text, interval, interval, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guard_lookup(text, interval, interval, boolean) TO {role};
"""


def upgrade() -> None:
    role = '"' + context.config.attributes["app_role"].replace('"', '""') + '"'
    op.execute(FUNCTION.format(role=role))
