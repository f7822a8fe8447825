"""Fixtures for roles inside a team (imported by the test modules that use them; conftest's `teammate` is a
member): an admin of the owner's team, and helpers to put a user in a team with a role, log them in and make an
invite link as the team page does."""

import re

import pytest
from django.test import Client

PASSWORD = "correct horse battery"


def join(account, email: str, role: str):
    from django.contrib.auth import get_user_model

    from wizchat.models import Membership

    user = get_user_model().objects.create_user(email, email, PASSWORD)
    Membership.objects.create(user=user, account=account, role=role)
    return user


@pytest.fixture
def team_admin(owner):
    return join(owner.membership.account, "admin@example.com", "admin")


@pytest.fixture
def fast_hashing(settings):
    """Log-ins and sign-ups in milliseconds (the real hasher is the point of no test using this)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create_link(who, role: str = "member") -> str:
    """An invite link's path, made on the team page by `who` (a user, or a client already logged in)."""
    client = who if isinstance(who, Client) else logged_in(who)
    body = client.post("/account/team/invites/", {"role": role}).content.decode()
    return re.search(r'value="http://testserver(/invite/[^"]+/)"', body).group(1)
