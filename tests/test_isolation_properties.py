"""Isolation under attack: random request sequences against a model of the rules.

A hypothesis state machine logs users in and out, switches their orgs, grants and
revokes memberships and moves default orgs behind their backs, and sends customer
requests with ids borrowed from other orgs, X-Org-Id headers naming foreign, unknown
or malformed orgs (once or twice), and the cookies of sessions that logout, a later
login or an org switch has ended. A plain in-memory model of the README's rules
("How a request gets its org") says what each answer must be. Every answer is held
to it: the exact status where the rules fix one; never a customer of an org the
user does not hold at that moment; and after every step the database, read as
admin, holds exactly the customers and live sessions the model expects.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy import accounts
from orgsafe.tenancy.sessions import new_token, token_hash
from tests.plugins.service import PASSWORD, Api, session_cookie

ORGS = ("north", "south", "east")
# Each user's orgs at the start of every example; the first is the default org.
USERS: dict[str, tuple[str, ...]] = {
    "solo": ("north",),
    "pair": ("north", "south"),
    "wide": ("east", "south"),
    "loner": (),
}
UNKNOWN_ORG = uuid.UUID("0badc0de-0000-4000-8000-000000000001")
UNKNOWN_CUSTOMER = uuid.UUID("c0ffee00-0000-4000-8000-000000000001")
NOT_AUTHENTICATED = {"error": "Not authenticated"}
NOT_FOUND = {"error": "Customer not found"}
MAX_PAGES = 60
# A login verifies an argon2 hash (a tenth of a second); other sessions are minted.
LOGINS_PER_EXAMPLE = 3
HEADER_SHOWN = 64  # whoami may clip the header it shows, but not shorter than this
ORG_ID_MAX = 64  # longer orgId bodies are invalid input, refused before the session

RUNS = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- the cast: orgs and users made once, reset before every example ----------


@dataclass
class Cast:
    target: DatabaseTarget
    admin: psycopg.Connection[tuple[Any, ...]]
    orgs: dict[str, uuid.UUID]
    users: dict[str, uuid.UUID]
    emails: dict[str, str]

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.admin.execute(query, params)
        return cur.fetchall() if cur.description else []

    def reset(self) -> None:
        users, orgs = list(self.users.values()), list(self.orgs.values())
        with self.admin.transaction():
            self.sql("DELETE FROM sessions WHERE user_id = ANY(%s)", (users,))
            self.sql("DELETE FROM customers WHERE org_id = ANY(%s)", (orgs,))
            self.sql("DELETE FROM memberships WHERE user_id = ANY(%s)", (users,))
            for user, start in USERS.items():
                self.restore(user, start)

    def restore(self, user: str, start: tuple[str, ...]) -> None:
        for org in start:
            self.grant(user, org)
        self.move_default(user, start[0] if start else None)

    def grant(self, user: str, org: str) -> None:
        self.sql(
            "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (self.users[user], self.orgs[org]),
        )

    def revoke(self, user: str, org: str) -> None:
        self.sql(
            "DELETE FROM memberships WHERE user_id = %s AND org_id = %s",
            (self.users[user], self.orgs[org]),
        )

    def move_default(self, user: str, org: str | None) -> None:
        self.sql(
            "UPDATE users SET default_org_id = %s WHERE id = %s",
            (self.orgs[org] if org else None, self.users[user]),
        )

    def add_customer(self, org: str, name: str) -> uuid.UUID:
        rows = self.sql(
            "INSERT INTO customers (org_id, name) VALUES (%s, %s) RETURNING id",
            (self.orgs[org], name),
        )
        return uuid.UUID(str(rows[0][0]))

    def mint_session(self, user: str, org: uuid.UUID | None) -> str:
        """A session stored as login stores one, without paying for argon2."""
        token = new_token()
        self.sql(
            "INSERT INTO sessions (token_hash, user_id, org_id, expires_at)"
            " VALUES (%s, %s, %s, now() + interval '1 hour')",
            (token_hash(token), self.users[user], org),
        )
        return token

    def customers(self) -> set[tuple[Any, ...]]:
        return set(
            self.sql(
                "SELECT id, org_id, name, email FROM customers WHERE org_id = ANY(%s)",
                (list(self.orgs.values()),),
            )
        )

    def customers_elsewhere(self) -> int:
        rows = self.sql(
            "SELECT count(*) FROM customers WHERE NOT org_id = ANY(%s)",
            (list(self.orgs.values()),),
        )
        return int(rows[0][0])

    def session_hashes(self) -> set[str]:
        rows = self.sql(
            "SELECT token_hash FROM sessions WHERE user_id = ANY(%s)",
            (list(self.users.values()),),
        )
        return {str(row[0]) for row in rows}


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Hypothesis caches what it learns on disk; that belongs in a temporary folder.
    home = tmp_path_factory.mktemp("hypothesis")
    set_hypothesis_home_dir(home)
    yield home
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def cast(target: DatabaseTarget) -> Iterator[Cast]:
    tag = secrets.token_hex(3)
    orgs = {name: accounts.create_org(target, f"{name} {tag}") for name in ORGS}
    emails = {user: f"{user}-{tag}@example.test" for user in USERS}
    users = {
        user: accounts.create_user(
            target, emails[user], PASSWORD, [orgs[o] for o in start]
        ).id
        for user, start in USERS.items()
    }
    with connect(target.admin_url, autocommit=True) as admin:
        yield Cast(target, admin, orgs, users, emails)


# --- what a client writes where an org id goes --------------------------------


@dataclass(frozen=True)
class OrgText:
    """One way to write an org id. Well-formed: plain, upper, unknown."""

    form: str
    org: str = "north"
    other: str = "south"

    def render(self, orgs: dict[str, uuid.UUID]) -> tuple[str, uuid.UUID | None]:
        """The text, and the org it names (None when the text is malformed)."""
        ident = orgs[self.org]
        written = {
            "plain": (str(ident), ident),
            "upper": (str(ident).upper(), ident),
            "unknown": (str(UNKNOWN_ORG), UNKNOWN_ORG),
            "braced": ("{" + str(ident) + "}", None),
            "bare": (ident.hex, None),
            "junk": ("not-an-org", None),
            "empty": ("", None),
            "list": (f"{ident},{orgs[self.other]}", None),
        }
        return written[self.form]


ORG_NAMES = st.sampled_from(ORGS)
WELL_FORMED = st.builds(
    OrgText, st.sampled_from(("plain", "plain", "upper", "unknown")), ORG_NAMES
)
ORG_TEXTS = st.one_of(
    WELL_FORMED,
    st.builds(
        OrgText,
        st.sampled_from(("braced", "bare", "junk", "empty", "list")),
        ORG_NAMES,
        ORG_NAMES,
    ),
)
# No header is the common case; a header is one text or, repeated, two.
HEADERS = st.one_of(
    st.just(()),
    st.just(()),
    st.tuples(WELL_FORMED),
    st.tuples(ORG_TEXTS),
    st.tuples(ORG_TEXTS, ORG_TEXTS),
)
USER_NAMES = st.sampled_from(tuple(USERS))
CUSTOMER_FORMS = st.sampled_from(("plain", "plain", "plain", "upper", "braced", "bare"))
BROKEN_IDS = st.tuples(st.none(), st.sampled_from(("unknown", "junk", "short")))
# Cookies that name no session at all, by the label a failing example prints.
NO_SESSION: dict[str, str | None] = {
    "no cookie": None,
    "forged": "forged-" + "0" * 36,
    "oversized": "x" * 200,
}


@dataclass(frozen=True)
class SentHeader:
    values: tuple[str, ...]
    named: uuid.UUID | None
    malformed: bool

    def refusal(self, held: set[uuid.UUID]) -> int | None:
        """The status the rules give this header outside production, if any."""
        if len(self.values) > 1 or self.malformed:
            return 400
        if self.values and self.named not in held:
            return 403
        return None


def sent_header(texts: tuple[OrgText, ...], orgs: dict[str, uuid.UUID]) -> SentHeader:
    rendered = [text.render(orgs) for text in texts]
    named = rendered[0][1] if len(rendered) == 1 else None
    malformed = len(rendered) == 1 and named is None
    return SentHeader(tuple(value for value, _ in rendered), named, malformed)


def customer_text(ref: tuple[uuid.UUID | None, str]) -> tuple[str, uuid.UUID | None]:
    """The path text for a customer reference, and the id it names if well-formed."""
    ident, form = ref
    if ident is None:
        broken = {"unknown": str(UNKNOWN_CUSTOMER), "junk": "no-such-id"}
        text = broken.get(form, "123")
        return text, UNKNOWN_CUSTOMER if form == "unknown" else None
    written = {
        "plain": (str(ident), ident),
        "upper": (str(ident).upper(), ident),
        "braced": ("{" + str(ident) + "}", None),
        "bare": (ident.hex, None),
    }
    return written[form]


# --- the model ------------------------------------------------------------------


@dataclass
class Session:
    user: str
    org: uuid.UUID | None
    live: bool = True


@dataclass
class Customer:
    id: uuid.UUID
    org: uuid.UUID
    name: str
    email: str | None = None

    @staticmethod
    def wire_keys() -> tuple[str, ...]:
        return ("id", "orgId", "name", "email")

    def wire(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "orgId": str(self.org),
            "name": self.name,
            "email": self.email,
        }


@dataclass(frozen=True)
class Verdict:
    """What the rules make of a request: a refusal, or the org it acts in."""

    status: int
    org: uuid.UUID | None = None
    source: str | None = None


@dataclass
class Model:
    production: bool
    members: dict[str, set[uuid.UUID]]
    defaults: dict[str, uuid.UUID | None]
    sessions: dict[str, Session] = field(default_factory=dict)
    customers: dict[uuid.UUID, Customer] = field(default_factory=dict)
    # Every id, name and email a customer ever had, with its org: never to leak.
    marks: dict[str, uuid.UUID] = field(default_factory=dict)
    ever: list[uuid.UUID] = field(default_factory=list)

    def live(self, token: str | None) -> Session | None:
        session = self.sessions.get(token) if token else None
        return session if session is not None and session.live else None

    def end(self, token: str | None) -> None:
        session = self.live(token)
        if session is not None:
            session.live = False

    def held(self, token: str | None) -> set[uuid.UUID]:
        session = self.live(token)
        return self.members[session.user] if session else set()

    def login_org(self, user: str) -> uuid.UUID | None:
        default = self.defaults[user]
        return default if default in self.members[user] else None

    def choose(self, token: str | None, header: SentHeader) -> Verdict:
        session = self.live(token)
        if session is None:
            return Verdict(401)
        held = self.members[session.user]
        refused = None if self.production else header.refusal(held)
        if refused is not None:
            return Verdict(refused)
        if session.org in held:
            return Verdict(200, session.org, "session")
        if header.named is not None and not self.production:
            return Verdict(200, header.named, "header")
        if self.defaults[session.user] in held:
            return Verdict(200, self.defaults[session.user], "user")
        return Verdict(200)

    def tenant(self, token: str | None, header: SentHeader) -> Verdict:
        """As `choose`, for routes that need an org: none at all is a 401."""
        verdict = self.choose(token, header)
        return Verdict(401) if verdict.status == 200 and not verdict.org else verdict

    def in_org(self, ident: uuid.UUID | None, org: uuid.UUID) -> Customer | None:
        found = self.customers.get(ident) if ident else None
        return found if found is not None and found.org == org else None

    def keep(self, customer: Customer) -> None:
        if customer.id not in self.marks:
            self.ever.append(customer.id)
        self.customers[customer.id] = customer
        for mark in (str(customer.id), customer.name, customer.email):
            if mark:
                self.marks[mark] = customer.org


# --- the machine -----------------------------------------------------------------


class Isolation(RuleBasedStateMachine):
    """Draws a cookie per request: mostly live sessions, also ended ones and none."""

    client: Api
    cast: Cast

    def __init__(self) -> None:
        super().__init__()
        self.cast.reset()
        orgs = self.cast.orgs
        self.model = Model(
            production=self.client.env == "production",
            members={u: {orgs[o] for o in s} for u, s in USERS.items()},
            defaults={u: orgs[s[0]] if s else None for u, s in USERS.items()},
        )
        self.elsewhere = self.cast.customers_elsewhere()
        self.serial = itertools.count()
        self.handles: dict[str, str | None] = dict(NO_SESSION)
        self.cursors: list[str] = []
        self.logins = 0

    def fresh(self, what: str) -> str:
        return f"{what}-{next(self.serial):03d}-{secrets.token_hex(3)}"

    def org(self, name: str) -> uuid.UUID:
        return self.cast.orgs[name]

    def header(self, texts: tuple[OrgText, ...]) -> SentHeader:
        return sent_header(texts, self.cast.orgs)

    def cookie(self, data: st.DataObject) -> str | None:
        """A session token: live (mostly), ended (replayed), forged or none."""
        live = [h for h, t in self.handles.items() if self.model.live(t)]
        ended = [h for h, t in self.handles.items() if t in self.model.sessions]
        ended = [h for h in ended if h not in live]
        # Hypothesis leans towards the first choice: the live sessions go there.
        choices = [st.sampled_from(live)] * 3 if live else []
        choices += [st.sampled_from(ended)] if ended else []
        choices.append(st.sampled_from(tuple(NO_SESSION)))
        return self.handles[data.draw(st.one_of(choices), label="cookie")]

    def customer(
        self, data: st.DataObject, token: str | None
    ) -> tuple[str, uuid.UUID | None]:
        """A customer id as text: the caller's own, borrowed, unknown or broken."""
        held = self.model.held(token)
        own = [i for i, c in self.model.customers.items() if c.org in held]
        choices = [st.tuples(st.sampled_from(own), CUSTOMER_FORMS)] * 2 if own else []
        if self.model.ever:
            choices.append(st.tuples(st.sampled_from(self.model.ever), CUSTOMER_FORMS))
        choices.append(BROKEN_IDS)
        return customer_text(data.draw(st.one_of(choices), label="customer"))

    def name_session(self, token: str, session: Session) -> None:
        self.handles[f"{session.user}#{len(self.handles)}"] = token
        self.model.sessions[token] = session

    def send(
        self,
        method: str,
        path: str,
        token: str | None,
        header: SentHeader | None = None,
        **kwargs: Any,
    ) -> Any:
        values = header.values if header else ()
        pairs = [("X-Org-Id", value) for value in values]
        response = self.client.call(method, path, token, headers=pairs, **kwargs)
        assert response.status_code < 500, response.text
        self.assert_nothing_foreign(response.text, self.model.held(token))
        return response

    def assert_nothing_foreign(self, text: str, held: set[uuid.UUID]) -> None:
        for mark, org in self.model.marks.items():
            assert org in held or json.dumps(mark) not in text, (mark, text)

    def assert_refused(self, response: Any, verdict: Verdict) -> None:
        assert response.status_code == verdict.status, (verdict, response.text)
        assert set(response.json()) == {"error"}
        if verdict.status == 401:
            assert response.json() == NOT_AUTHENTICATED

    # -- setting the stage ---------------------------------------------------

    @initialize()
    def seed_customers(self) -> None:
        for org in ORGS + ORGS:
            name = self.fresh(f"seed-{org}")
            ident = self.cast.add_customer(org, name)
            self.model.keep(Customer(ident, self.org(org), name))

    @initialize()
    def sign_everyone_in(self) -> None:
        for user in USERS:
            org = self.model.login_org(user)
            self.name_session(self.cast.mint_session(user, org), Session(user, org))

    # -- memberships, changed behind the users' backs -------------------------

    @rule(user=USER_NAMES, org=ORG_NAMES)
    def revoke_membership(self, user: str, org: str) -> None:
        self.cast.revoke(user, org)
        self.model.members[user].discard(self.org(org))

    @precondition(lambda self: self.sessions_in_an_org())
    @rule(data=st.data())
    def revoke_the_org_a_live_session_acts_in(self, data: st.DataObject) -> None:
        # The sharpest attack: the session still names the org, the user has lost it.
        handle = data.draw(st.sampled_from(self.sessions_in_an_org()), label="session")
        session = self.model.sessions[str(self.handles[handle])]
        assert session.org is not None
        self.revoke_membership(session.user, self.org_name(session.org))

    def sessions_in_an_org(self) -> list[str]:
        found = []
        for handle, token in self.handles.items():
            session = self.model.live(token)
            if session and session.org in self.model.members[session.user]:
                found.append(handle)
        return found

    def org_name(self, ident: uuid.UUID) -> str:
        return next(name for name, org in self.cast.orgs.items() if org == ident)

    @rule(user=USER_NAMES, org=ORG_NAMES)
    def grant_membership(self, user: str, org: str) -> None:
        self.cast.grant(user, org)
        self.model.members[user].add(self.org(org))

    @rule(user=USER_NAMES, org=st.one_of(st.none(), ORG_NAMES))
    def move_default_org(self, user: str, org: str | None) -> None:
        self.cast.move_default(user, org)
        self.model.defaults[user] = self.org(org) if org else None

    # -- sessions ----------------------------------------------------------------

    @precondition(lambda self: self.logins < LOGINS_PER_EXAMPLE)
    @rule(data=st.data(), user=USER_NAMES, shout=st.booleans())
    def login(self, data: st.DataObject, user: str, shout: bool) -> None:
        self.logins += 1
        sent = self.cookie(data)
        email = self.cast.emails[user]
        body = {"email": email.upper() if shout else email, "password": PASSWORD}
        response = self.send("POST", "/api/auth/login", sent, json=body)
        org = self.model.login_org(user)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "userId": str(self.cast.users[user]),
            "orgId": str(org) if org else None,
        }
        self.rotate(sent, session_cookie(response), Session(user, org))

    def rotate(self, sent: str | None, token: str, session: Session) -> None:
        """The sent cookie's session ends, whoever's it was; the new one is live."""
        assert token != sent and token not in self.model.sessions
        self.model.end(sent)
        self.name_session(token, session)

    @rule(data=st.data(), texts=HEADERS)
    def logout(self, data: st.DataObject, texts: tuple[OrgText, ...]) -> None:
        sent = self.cookie(data)
        live = self.model.live(sent) is not None
        response = self.send("POST", "/api/auth/logout", sent, self.header(texts))
        assert response.status_code == (204 if live else 401), response.text
        self.model.end(sent)

    @rule(data=st.data(), wanted=ORG_TEXTS, texts=HEADERS)
    def switch_org(
        self, data: st.DataObject, wanted: OrgText, texts: tuple[OrgText, ...]
    ) -> None:
        sent = self.cookie(data)
        text, org = wanted.render(self.cast.orgs)
        body = {"orgId": text}
        response = self.send(
            "POST", "/api/session/org", sent, self.header(texts), json=body
        )
        session = self.model.live(sent)
        expected = self.switch_status(session, text, org)
        assert response.status_code == expected, response.text
        if expected != 200 or session is None:
            return
        assert response.json() == {"orgId": str(org)}
        self.rotate(sent, session_cookie(response), Session(session.user, org))

    def switch_status(
        self, session: Session | None, text: str, org: uuid.UUID | None
    ) -> int:
        # The header plays no part in a switch; only the body names the org.
        if len(text) > ORG_ID_MAX:
            return 400
        if session is None:
            return 401
        if org is None:
            return 400
        return 200 if org in self.model.members[session.user] else 403

    @rule(data=st.data(), texts=HEADERS)
    def whoami(self, data: st.DataObject, texts: tuple[OrgText, ...]) -> None:
        sent, header = self.cookie(data), self.header(texts)
        response = self.send("GET", "/api/debug/whoami", sent, header)
        verdict = self.model.choose(sent, header)
        if verdict.status != 200:
            self.assert_refused(response, verdict)
            return
        session = self.model.live(sent)
        assert session is not None and response.status_code == 200
        body = response.json()
        report = body.pop("headerOrgId")
        assert body == self.expected_whoami(session, header, verdict)
        assert_header_report(report, header.values)

    def expected_whoami(
        self, session: Session, header: SentHeader, verdict: Verdict
    ) -> dict[str, Any]:
        return {
            "userId": str(self.cast.users[session.user]),
            "sessionOrgId": str(session.org) if session.org else None,
            "headerIgnored": bool(header.values) and verdict.source != "header",
            "effectiveOrgId": str(verdict.org) if verdict.org else None,
            "orgSource": verdict.source,
            "environment": self.client.env,
        }

    # -- customers ---------------------------------------------------------------

    @rule(data=st.data(), texts=HEADERS, email=st.booleans())
    def create_customer(
        self, data: st.DataObject, texts: tuple[OrgText, ...], email: bool
    ) -> None:
        sent, header = self.cookie(data), self.header(texts)
        name = self.fresh("made")
        body = {"name": name, "email": f"{name}@example.test" if email else None}
        response = self.send("POST", "/api/customers", sent, header, json=body)
        verdict = self.model.tenant(sent, header)
        if verdict.status != 200:
            self.assert_refused(response, verdict)
            return
        assert response.status_code == 201, response.text
        assert verdict.org is not None
        made = response.json()
        customer = Customer(uuid.UUID(made["id"]), verdict.org, name, body["email"])
        assert wire_of(made) == customer.wire()
        self.model.keep(customer)

    @rule(data=st.data(), texts=HEADERS, foreign=ORG_NAMES, update=st.booleans())
    def smuggle_an_org_id_in_a_body(
        self,
        data: st.DataObject,
        texts: tuple[OrgText, ...],
        foreign: str,
        update: bool,
    ) -> None:
        sent = self.cookie(data)
        body = {"name": self.fresh("smuggled"), "orgId": str(self.org(foreign))}
        path = "/api/customers"
        if update:
            path += "/" + self.customer(data, sent)[0]
        method = "PATCH" if update else "POST"
        response = self.send(method, path, sent, self.header(texts), json=body)
        # Invalid input is refused before anything else is looked at.
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "Unknown field: orgId"}

    @rule(data=st.data(), texts=HEADERS, limit=st.integers(1, 4))
    def list_every_page(
        self, data: st.DataObject, texts: tuple[OrgText, ...], limit: int
    ) -> None:
        sent, header = self.cookie(data), self.header(texts)
        verdict = self.model.tenant(sent, header)
        seen: list[dict[str, Any]] = []
        cursor = None
        for _ in range(MAX_PAGES):
            page = self.page(sent, header, verdict, limit, cursor)
            if page is None:
                return
            seen += page["items"]
            cursor = page["nextCursor"]
            if cursor is None:
                break
            self.cursors.append(cursor)
        assert verdict.org is not None
        self.assert_whole_org(seen, verdict.org)

    def page(
        self,
        sent: str | None,
        header: SentHeader,
        verdict: Verdict,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any] | None:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = self.send("GET", "/api/customers", sent, header, params=params)
        if verdict.status != 200:
            self.assert_refused(response, verdict)
            return None
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        assert len(page["items"]) <= limit
        return page

    def assert_whole_org(self, seen: list[dict[str, Any]], org: uuid.UUID) -> None:
        ids = [item["id"] for item in seen]
        assert len(ids) == len(set(ids)), "a customer was listed twice"
        expected = [c.wire() for c in self.model.customers.values() if c.org == org]
        assert sorted(map(wire_of, seen), key=by_id) == sorted(expected, key=by_id)

    @precondition(lambda self: self.cursors)
    @rule(data=st.data(), texts=HEADERS)
    def list_from_a_borrowed_cursor(
        self, data: st.DataObject, texts: tuple[OrgText, ...]
    ) -> None:
        sent, header = self.cookie(data), self.header(texts)
        verdict = self.model.tenant(sent, header)
        cursor = data.draw(st.sampled_from(self.cursors), label="cursor")
        page = self.page(sent, header, verdict, 4, cursor)
        if page is None:
            return
        assert verdict.org is not None
        for item in page["items"]:
            found = self.model.in_org(uuid.UUID(item["id"]), verdict.org)
            assert found is not None and wire_of(item) == found.wire(), item

    @rule(data=st.data(), texts=HEADERS)
    def get_customer(self, data: st.DataObject, texts: tuple[OrgText, ...]) -> None:
        sent, header = self.cookie(data), self.header(texts)
        text, ident = self.customer(data, sent)
        response = self.send("GET", f"/api/customers/{text}", sent, header)
        found = self.expect_customer(response, sent, header, ident)
        if found is not None:
            assert response.status_code == 200, response.text
            assert wire_of(response.json()) == found.wire()

    def expect_customer(
        self,
        response: Any,
        sent: str | None,
        header: SentHeader,
        ident: uuid.UUID | None,
    ) -> Customer | None:
        """Checks a refusal; returns the customer the request may act on, if any."""
        verdict = self.model.tenant(sent, header)
        if ident is None and response.status_code == 404:
            # A malformed id may be turned away before the session is looked at.
            assert response.json() == NOT_FOUND
            return None
        if verdict.status != 200:
            self.assert_refused(response, verdict)
            return None
        assert verdict.org is not None
        found = self.model.in_org(ident, verdict.org)
        if found is None:
            assert response.status_code == 404, response.text
            assert response.json() == NOT_FOUND
        return found

    @rule(data=st.data(), texts=HEADERS, change=st.integers(0, 3))
    def update_customer(
        self, data: st.DataObject, texts: tuple[OrgText, ...], change: int
    ) -> None:
        sent, header = self.cookie(data), self.header(texts)
        text, ident = self.customer(data, sent)
        new = self.fresh("renamed")
        bodies = [{"name": new}, {"email": f"{new}@example.test"}, {"email": None}, {}]
        patch: dict[str, Any] = bodies[change]
        response = self.send(
            "PATCH", f"/api/customers/{text}", sent, header, json=patch
        )
        found = self.expect_customer(response, sent, header, ident)
        if found is None:
            return
        assert response.status_code == 200, response.text
        for key, value in patch.items():
            setattr(found, key, value)
        self.model.keep(found)
        assert wire_of(response.json()) == found.wire()

    @rule(data=st.data(), texts=HEADERS)
    def delete_customer(self, data: st.DataObject, texts: tuple[OrgText, ...]) -> None:
        sent, header = self.cookie(data), self.header(texts)
        text, ident = self.customer(data, sent)
        response = self.send("DELETE", f"/api/customers/{text}", sent, header)
        found = self.expect_customer(response, sent, header, ident)
        if found is None:
            return
        assert response.status_code == 204, response.text
        del self.model.customers[found.id]

    # -- after every step: the database, read as admin ----------------------------

    @invariant()
    def database_holds_exactly_the_models_customers(self) -> None:
        expected = {
            (c.id, c.org, c.name, c.email) for c in self.model.customers.values()
        }
        assert self.cast.customers() == expected
        assert self.cast.customers_elsewhere() == self.elsewhere

    @invariant()
    def only_the_models_live_sessions_are_stored(self) -> None:
        live = {t for t, s in self.model.sessions.items() if s.live}
        assert self.cast.session_hashes() == {token_hash(t) for t in live}


def assert_header_report(report: str | None, values: tuple[str, ...]) -> None:
    """whoami shows the header as sent; a long one may be clipped, never changed."""
    if not values:
        assert report is None
        return
    sent = ",".join(values)
    assert report is not None and sent.startswith(report)
    assert report == sent or len(report) >= HEADER_SHOWN


def wire_of(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in Customer.wire_keys()}


def by_id(item: dict[str, Any]) -> str:
    return str(item["id"])


def bound(env: str, client: Api, cast: Cast) -> type[Isolation]:
    return type(f"Isolation_{env}", (Isolation,), {"client": client, "cast": cast})


@pytest.mark.slow
@pytest.mark.parametrize("env", ["production", "development"])
def test_no_request_sequence_shows_or_writes_another_orgs_customers(
    env: str, api: Callable[[str], Api], cast: Cast
) -> None:
    run_state_machine_as_test(bound(env, api(env), cast), settings=RUNS)
