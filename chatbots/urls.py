from django.urls import path

from . import views

app_name = "chatbots"
urlpatterns = [
    path("", views.chatbot_list, name="list"),
    path("new/", views.chatbot_new, name="create"),
    path("<uuid:chatbot_id>/", views.chatbot_detail, name="detail"),
    path("<uuid:chatbot_id>/edit/", views.chatbot_edit, name="edit"),
    path("<uuid:chatbot_id>/delete/", views.chatbot_remove, name="delete"),
]
