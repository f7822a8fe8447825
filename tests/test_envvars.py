"""The spec's CUSTOM_* environment variables, to and from component settings."""

import pytest

from byoi import services
from byoi.envvars import EnvInvalid, env_to_settings
from byoi.models import BYOIComponent
from byoi.resolver import ByoiUnavailable
from byoi.services import components_to_env
from wizchat.models import Plan

COMPONENTS = {
    "llm": ({"endpoint": "https://your-api.com/v1", "model": "gpt-4o"}, {"api_key": "sk-llm-secret-1"}),
    "embeddings": ({"endpoint": "https://your-api.com/v1", "model": "text-embedding-3-large", "dimensions": 3072},
                   {"api_key": "sk-emb-secret-2"}),
    "vector_store": ({"host": "your-db.com", "port": 5432, "database": "vectors", "username": "vec_user",
                      "ssl_mode": "require"}, {"password": "vec-pass-3"}),
    "graph": ({"host": "your-falkor.com", "port": 6379, "ssl": True}, {"password": "falkor-pass-4"}),
    "conversations": ({"host": "your-db.com", "port": 5432, "database": "conversations", "username": "conv_user",
                       "ssl_mode": "require"}, {"password": "conv-pass-5"}),
}

SPEC_EXAMPLE = {
    "CUSTOM_LLM_ENDPOINT": "https://your-api.com/v1", "CUSTOM_LLM_API_KEY": "sk-llm-secret-1",
    "CUSTOM_LLM_MODEL": "gpt-4o",
    "CUSTOM_EMBEDDINGS_ENDPOINT": "https://your-api.com/v1", "CUSTOM_EMBEDDINGS_API_KEY": "sk-emb-secret-2",
    "CUSTOM_EMBEDDINGS_MODEL": "text-embedding-3-large", "CUSTOM_EMBEDDINGS_DIMENSIONS": "3072",
    "CUSTOM_PGVECTOR_HOST": "your-db.com", "CUSTOM_PGVECTOR_PORT": "5432", "CUSTOM_PGVECTOR_DATABASE": "vectors",
    "CUSTOM_PGVECTOR_USER": "vec_user", "CUSTOM_PGVECTOR_PASSWORD": "vec-pass-3",
    "CUSTOM_PGVECTOR_SSL_MODE": "require",
    "CUSTOM_FALKORDB_HOST": "your-falkor.com", "CUSTOM_FALKORDB_PORT": "6379",
    "CUSTOM_FALKORDB_PASSWORD": "falkor-pass-4", "CUSTOM_FALKORDB_SSL": "true",
    "CUSTOM_CONVERSATIONS_HOST": "your-db.com", "CUSTOM_CONVERSATIONS_PORT": "5432",
    "CUSTOM_CONVERSATIONS_DATABASE": "conversations", "CUSTOM_CONVERSATIONS_USER": "conv_user",
    "CUSTOM_CONVERSATIONS_PASSWORD": "conv-pass-5", "CUSTOM_CONVERSATIONS_SSL_MODE": "require",
}


@pytest.fixture
def full_chatbot(chatbot):
    for kind, (values, secrets) in COMPONENTS.items():
        services.component_save(chatbot, kind, values=values, secrets=secrets)
    services.byoi_set_enabled(chatbot, True)
    return chatbot


def test_it_writes_exactly_the_spec_variables(full_chatbot):
    assert components_to_env(full_chatbot) == SPEC_EXAMPLE


@pytest.mark.parametrize("kind", list(COMPONENTS))
def test_it_round_trips_every_kind(full_chatbot, kind):
    component = BYOIComponent.objects.get(chatbot=full_chatbot, kind=kind)
    assert env_to_settings(components_to_env(full_chatbot))[kind] == component.settings_dict()


def test_it_writes_booleans_as_true_and_false(full_chatbot):
    services.component_save(full_chatbot, "graph", values={**COMPONENTS["graph"][0], "ssl": False},
                           secrets=COMPONENTS["graph"][1])  # turning SSL off needs the password again
    assert components_to_env(full_chatbot)["CUSTOM_FALKORDB_SSL"] == "false"


def test_it_leaves_out_disabled_components(full_chatbot):
    services.component_disable(full_chatbot, "graph")
    assert not any(k.startswith("CUSTOM_FALKORDB_") for k in components_to_env(full_chatbot))


def test_it_writes_nothing_when_byoi_is_off(full_chatbot):
    services.byoi_set_enabled(full_chatbot, False)
    assert components_to_env(full_chatbot) == {}


def test_it_refuses_to_deploy_custom_settings_the_plan_no_longer_allows(full_chatbot):
    full_chatbot.account.plan = Plan.objects.get(slug="free")
    full_chatbot.account.save()
    with pytest.raises(ByoiUnavailable):
        components_to_env(full_chatbot)


def test_it_reads_only_the_kinds_present():
    env = {k: v for k, v in SPEC_EXAMPLE.items() if k.startswith("CUSTOM_LLM_")}
    assert set(env_to_settings(env)) == {"llm"}


def test_it_applies_defaults_for_optional_variables():
    env = {"CUSTOM_FALKORDB_HOST": "g.example.com"}
    assert env_to_settings(env)["graph"] == {"host": "g.example.com", "port": 6379, "ssl": True}


def test_it_ignores_variables_that_are_not_byoi():
    assert env_to_settings({"PATH": "/usr/bin", "HOME": "/root"}) == {}


def test_it_names_an_unknown_custom_variable():
    with pytest.raises(EnvInvalid) as caught:
        env_to_settings({**SPEC_EXAMPLE, "CUSTOM_PGVECTOR_USERNAME": "x"})
    assert list(caught.value.errors) == ["CUSTOM_PGVECTOR_USERNAME"]


def test_it_names_a_missing_required_variable():
    env = {k: v for k, v in SPEC_EXAMPLE.items() if k != "CUSTOM_PGVECTOR_HOST"}
    with pytest.raises(EnvInvalid) as caught:
        env_to_settings(env)
    assert "CUSTOM_PGVECTOR_HOST" in caught.value.errors["CUSTOM_PGVECTOR_HOST"]


def test_it_explains_a_malformed_port():
    with pytest.raises(EnvInvalid) as caught:
        env_to_settings({**SPEC_EXAMPLE, "CUSTOM_PGVECTOR_PORT": "five"})
    assert caught.value.errors["CUSTOM_PGVECTOR_PORT"].startswith("Port must be a whole number")


def test_it_never_quotes_a_secret_in_its_errors():
    env = {**SPEC_EXAMPLE, "CUSTOM_PGVECTOR_PORT": "bad", "CUSTOM_LLM_MODEL": ""}
    with pytest.raises(EnvInvalid) as caught:
        env_to_settings(env)
    assert not any(secret in str(caught.value) for secret in ("vec-pass-3", "sk-llm-secret-1"))
