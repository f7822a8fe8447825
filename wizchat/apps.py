from django.apps import AppConfig


class WizchatConfig(AppConfig):
    name = "wizchat"
    verbose_name = "Accounts and plans"
