from django.urls import path

from . import views, views_chat, views_deploy, views_knowledge

app_name = "chatbots"
urlpatterns = [
    path("", views.chatbot_list, name="list"),
    path("new/", views.chatbot_new, name="create"),
    path("<uuid:chatbot_id>/", views.chatbot_detail, name="detail"),
    path("<uuid:chatbot_id>/edit/", views.chatbot_edit, name="edit"),
    path("<uuid:chatbot_id>/delete/", views.chatbot_remove, name="delete"),
    # Knowledge and chat (chatbots/views_knowledge.py, chatbots/views_chat.py)
    path("<uuid:chatbot_id>/documents/", views_knowledge.document_create, name="document_create"),
    path("<uuid:chatbot_id>/documents/<uuid:document_id>/", views_knowledge.document_row, name="document_row"),
    path("<uuid:chatbot_id>/documents/<uuid:document_id>/delete/", views_knowledge.document_remove,
         name="document_delete"),
    path("<uuid:chatbot_id>/documents/<uuid:document_id>/retry/", views_knowledge.document_retry,
         name="document_retry"),
    path("<uuid:chatbot_id>/knowledge-settings/", views_knowledge.knowledge_settings, name="knowledge_settings"),
    path("<uuid:chatbot_id>/data-locations/", views_knowledge.data_locations, name="data_locations"),
    path("<uuid:chatbot_id>/chat/", views_chat.chat_ask, name="chat"),
    path("<uuid:chatbot_id>/history/", views_chat.chat_history, name="history"),
    # Deployment, API keys, widget (chatbots/views_deploy.py)
    path("<uuid:chatbot_id>/deploy/", views_deploy.deploy, name="deploy"),
    path("<uuid:chatbot_id>/deploy/stop/", views_deploy.deploy_stop, name="deploy_stop"),
    path("<uuid:chatbot_id>/deploy/status/", views_deploy.deploy_status, name="deploy_status"),
    path("<uuid:chatbot_id>/api-keys/", views_deploy.api_key_create, name="api_key_create"),
    path("<uuid:chatbot_id>/api-keys/<uuid:key_id>/revoke/", views_deploy.api_key_revoke, name="api_key_revoke"),
    path("<uuid:chatbot_id>/allowed-origins/", views_deploy.allowed_origins, name="allowed_origins"),
]
