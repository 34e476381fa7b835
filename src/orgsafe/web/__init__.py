"""The HTTP surface."""

from orgsafe.web.app import create_app

__all__ = ["create_app"]
