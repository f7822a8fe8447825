"""What deployed runtimes call on the platform (never included by a runtime's own URL configuration)."""

from django.urls import path

from . import views_internal

urlpatterns = [
    path("internal/runtimes/usage", views_internal.runtime_usage_report, name="runtime_usage"),
    path("internal/runtimes/readiness", views_internal.runtime_readiness_report, name="runtime_readiness"),
]
