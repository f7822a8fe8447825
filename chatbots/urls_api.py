"""The public API and the widget: included by the platform's and a deployed runtime's URL configurations."""

from django.urls import path

from . import views_api

urlpatterns = [
    path("v1/chat/completions", views_api.chat_completions, name="api_chat_completions"),
    path("v1/models", views_api.models, name="api_models"),
    path("v1/models/<str:model>", views_api.model_detail, name="api_model"),
    path("widget.js", views_api.widget_script, name="widget_script"),
    path("widget/<uuid:chatbot_id>/", views_api.widget_frame, name="widget_frame"),
    path("widget/<uuid:chatbot_id>/session", views_api.widget_session, name="widget_session"),
]
