from django.apps import AppConfig


class ByoiConfig(AppConfig):
    name = "byoi"
    verbose_name = "BYOI (Bring Your Own Infrastructure)"

    def ready(self):
        from . import crypto

        crypto.install_key_ring()
