"""Request and response bodies: camelCase on the wire, strict on the way in."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from orgsafe.errors import UsageError
from orgsafe.tenancy.accounts import EMAIL_MAX, normalise_email

NAME_MAX = 200


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Body(Wire):
    # Unknown keys are refused: a client-sent orgId is an error, not a suggestion.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid"
    )


class ErrorBody(BaseModel):
    error: str


def clean_email(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return normalise_email(value)
    except UsageError:
        raise ValueError("not a valid email address") from None


class LoginBody(Body):
    email: str = Field(min_length=1, max_length=EMAIL_MAX)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class LoginResult(Wire):
    user_id: uuid.UUID
    org_id: uuid.UUID | None


class SwitchOrgBody(Body):
    org_id: str = Field(max_length=64)


class SwitchOrgResult(Wire):
    org_id: uuid.UUID


class WhoAmI(Wire):
    user_id: uuid.UUID
    session_org_id: uuid.UUID | None
    header_org_id: str | None
    header_ignored: bool
    effective_org_id: uuid.UUID | None
    org_source: str | None
    environment: str


def clean_name(value: str | None) -> str:
    if value is None or not value.strip():
        raise ValueError("must not be blank or null")
    # PostgreSQL text cannot hold NUL: refuse it here, as invalid input.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value.strip()


class CustomerIn(Body):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    email: str | None = Field(default=None, max_length=EMAIL_MAX)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_name(value)

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return clean_email(value)


class CustomerPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    email: str | None = Field(default=None, max_length=EMAIL_MAX)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str:
        return clean_name(value)

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return clean_email(value)


class CustomerOut(Wire):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    email: str | None
    created_at: datetime
    updated_at: datetime


class CustomerPage(Wire):
    items: list[CustomerOut]
    next_cursor: str | None


class Status(BaseModel):
    status: str
