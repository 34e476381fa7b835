"""Orgs, users, memberships and sessions: who may act in which org."""
