"""Which backend serves each component: custom where enabled, defaults elsewhere, never silently."""

import pytest

from byoi import resolver, services
from byoi.resolver import ByoiUnavailable, default_settings, resolve, resolve_from_env
from tests.openai_server import OpenAIServer
from wizchat.models import Plan


@pytest.fixture
def default_llm(settings):
    """A real OpenAI-protocol server standing in for the platform's default LLM."""
    server = OpenAIServer(api_key="sk-default-platform-key").start()
    settings.DEFAULT_LLM_ENDPOINT, settings.DEFAULT_LLM_API_KEY = server.base_url, server.api_key
    settings.DEFAULT_LLM_MODEL = "gpt-4o-mini"
    resolver.clear_cache()
    yield server
    server.stop()
    resolver.clear_cache()


@pytest.fixture
def custom_llm_bot(chatbot, openai_server):
    services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url, "model": "gpt-4o-mini"},
                            secrets={"api_key": openai_server.api_key})
    services.byoi_set_enabled(chatbot, True)
    return chatbot


def ask(stack) -> str:
    return stack.llm.chat([{"role": "user", "content": "Hello?"}], max_tokens=8)


def test_it_uses_the_custom_llm_when_byoi_and_the_component_are_enabled(custom_llm_bot, openai_server, default_llm):
    ask(resolve(custom_llm_bot))
    assert (len(openai_server.calls("/chat/completions")), default_llm.calls("/chat/completions")) == (1, [])


def test_it_uses_the_defaults_for_kinds_without_a_component(custom_llm_bot, default_llm):
    sources = resolve(custom_llm_bot).sources
    assert sources == {"llm": "custom", "embeddings": "default", "vector_store": "default", "graph": "default",
                       "conversations": "default"}


def test_it_uses_the_defaults_when_byoi_is_switched_off(custom_llm_bot, openai_server, default_llm):
    services.byoi_set_enabled(custom_llm_bot, False)
    ask(resolve(custom_llm_bot))
    assert (openai_server.calls("/chat/completions"), len(default_llm.calls("/chat/completions"))) == ([], 1)


def test_it_uses_the_default_for_a_disabled_component(custom_llm_bot, default_llm):
    services.component_disable(custom_llm_bot, "llm")
    assert resolve(custom_llm_bot).sources["llm"] == "default"


def test_it_refuses_to_fall_back_when_the_plan_no_longer_allows_byoi(custom_llm_bot, default_llm):
    custom_llm_bot.account.plan = Plan.objects.get(slug="free")
    custom_llm_bot.account.save()
    with pytest.raises(ByoiUnavailable) as caught:
        ask(resolve(custom_llm_bot))
    assert (str(caught.value), default_llm.requests) == (
        "BYOI is paused: the Free plan does not include BYOI. Upgrade or disable BYOI for this chatbot.", [])


def test_it_uses_the_defaults_after_a_downgraded_chatbot_disables_byoi(custom_llm_bot, default_llm):
    custom_llm_bot.account.plan = Plan.objects.get(slug="free")
    custom_llm_bot.account.save()
    services.byoi_set_enabled(custom_llm_bot, False)
    ask(resolve(custom_llm_bot))
    assert len(default_llm.calls("/chat/completions")) == 1


def test_it_describes_locations_without_secrets(custom_llm_bot, openai_server):
    description = resolve(custom_llm_bot).describe()
    assert description["llm"] == {"label": "LLM", "source": "custom", "location": openai_server.base_url}
    assert openai_server.api_key not in repr(description)


def test_it_describes_a_database_as_host_port_and_name(chatbot):
    services.component_save(chatbot, "vector_store", values={"host": "db.example.com", "database": "vectors",
                                                             "username": "svc"}, secrets={"password": "pw-xyz-123"})
    services.byoi_set_enabled(chatbot, True)
    assert resolve(chatbot).describe()["vector_store"]["location"] == "db.example.com:5432/vectors"


def test_it_keeps_secrets_out_of_the_stacks_repr(custom_llm_bot, openai_server):
    stack = resolve(custom_llm_bot)
    assert openai_server.api_key not in repr(stack) + repr(stack.llm)


def test_it_reuses_one_backend_instance_per_settings(custom_llm_bot, default_llm):
    assert resolve(custom_llm_bot).llm is resolve(custom_llm_bot).llm


def test_it_drops_the_old_instance_when_the_settings_change(custom_llm_bot, openai_server, default_llm):
    old = resolve(custom_llm_bot).llm
    services.component_save(custom_llm_bot, "llm", values={"endpoint": openai_server.base_url,
                                                           "model": "llama-3.1-70b"}, secrets={})
    new = resolve(custom_llm_bot).llm
    assert new is not old and old not in resolver._instances.values()


def test_it_builds_a_stack_from_custom_variables_alone(openai_server, default_llm):
    # No `db` fixture: pytest-django makes any platform database access raise here.
    env = {"CUSTOM_LLM_ENDPOINT": openai_server.base_url, "CUSTOM_LLM_API_KEY": openai_server.api_key,
           "CUSTOM_LLM_MODEL": "gpt-4o-mini"}
    ask(resolve_from_env(env))
    assert len(openai_server.calls("/chat/completions")) == 1


def test_it_uses_defaults_for_kinds_without_variables(openai_server):
    env = {"CUSTOM_LLM_ENDPOINT": openai_server.base_url, "CUSTOM_LLM_API_KEY": "k", "CUSTOM_LLM_MODEL": "m"}
    assert resolve_from_env(env).sources["vector_store"] == "default"


def test_it_reads_the_default_vector_store_from_the_platform_database(settings):
    db = settings.DATABASES["default"]
    assert default_settings("vector_store") == {
        "host": db["HOST"], "port": int(db["PORT"]), "database": db["NAME"], "username": db["USER"],
        "password": db["PASSWORD"], "ssl_mode": "disable", "egress_guard": False}


def test_it_reads_the_default_graph_from_falkordb_url(settings):
    settings.FALKORDB_URL = "rediss://:p%40ss@graph.internal:6380/0"
    assert default_settings("graph") == {"host": "graph.internal", "port": 6380, "password": "p@ss", "ssl": True,
                                         "egress_guard": False}


def test_it_uses_local_embeddings_when_no_default_endpoint_is_set(settings, chatbot):
    settings.DEFAULT_EMBEDDINGS_ENDPOINT = ""
    assert resolve(chatbot).describe()["embeddings"]["location"].startswith("in-process")


def test_it_builds_one_instance_for_concurrent_first_uses(openai_server):
    from concurrent.futures import ThreadPoolExecutor

    resolver.clear_cache()
    env = {"CUSTOM_LLM_ENDPOINT": openai_server.base_url, "CUSTOM_LLM_API_KEY": "k", "CUSTOM_LLM_MODEL": "m"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        instances = list(pool.map(lambda _: id(resolve_from_env(env).llm), range(32)))
    assert len(set(instances)) == 1


def test_it_closes_the_old_instance_when_the_settings_change(custom_llm_bot, openai_server, default_llm):
    old = resolve(custom_llm_bot).llm
    old.chat([{"role": "user", "content": "Hi"}], max_tokens=4)  # opens its HTTP client
    services.component_save(custom_llm_bot, "llm", values={"endpoint": openai_server.base_url,
                                                           "model": "llama-3.1-70b"}, secrets={})
    assert resolve(custom_llm_bot).llm is not old
    assert old._client is None


def test_it_closes_a_disabled_components_instance(custom_llm_bot, default_llm, django_capture_on_commit_callbacks):
    old = resolve(custom_llm_bot).llm
    old.chat([{"role": "user", "content": "Hi"}], max_tokens=4)
    with django_capture_on_commit_callbacks(execute=True):
        services.component_disable(custom_llm_bot, "llm")
    assert old._client is None
