"""The CHATBOT argument of the operators' commands: a chatbot's UUID."""

import uuid

from django.core.management.base import CommandError

from chatbots.models import Chatbot


def chatbot_from_arg(value: str) -> Chatbot:
    raw = str(value).strip()
    try:
        chatbot_id = uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"{raw[:60]!r} is not a chatbot id: give the chatbot's UUID (shown in its page's "
                           "address).") from None
    chatbot = Chatbot.objects.select_related("account__plan").filter(pk=chatbot_id).first()
    if chatbot is None:
        raise CommandError(f"No chatbot has the id {chatbot_id}.")
    return chatbot


def deployment_env_or_error(chatbot: Chatbot) -> dict[str, str]:
    """The chatbot's deployment variables, or CommandError saying why it cannot be deployed."""
    from chatbots.deployments import DeployRefused, deployment_env

    try:
        return deployment_env(chatbot)
    except DeployRefused as refused:
        raise CommandError(str(refused)) from None


def deployed_env_or_error(chatbot: Chatbot) -> dict[str, str]:
    """The variables the chatbot's local deployment was deployed with (its snapshot), or CommandError saying why
    there are none to show."""
    from chatbots.deployments import DeployRefused, deployment_runtime_env
    from chatbots.models import Deployment

    deployment = Deployment.objects.filter(chatbot=chatbot).first()
    if deployment is None:
        raise CommandError(f"Chatbot {chatbot.id} is not deployed.")
    if deployment.target == Deployment.Target.KUBERNETES:
        raise CommandError("This chatbot is deployed to Kubernetes: the variables it was deployed with are in the "
                           "Secret and ConfigMap named after it in DEPLOY_KUBERNETES_NAMESPACE.")
    try:
        return deployment_runtime_env(deployment)[1]
    except DeployRefused as refused:
        raise CommandError(str(refused)) from None
