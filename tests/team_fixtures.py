"""Fixtures for roles inside a team (imported by the test modules that use them; conftest's `teammate` is a
member): an admin of the owner's team, and helpers to put a user in a team with a role."""

import pytest

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
