from django.urls import path

from . import views

app_name = "byoi"
urlpatterns = [
    # The create form (no chatbot yet)
    path("panel/", views.panel_partial, name="panel"),
    path("panel/<slug:kind>/", views.section_partial, name="section"),
    path("test/<slug:kind>/", views.test_start, name="test_start"),
    path("tests/<uuid:test_id>/", views.test_status, name="test_status"),
    # An existing chatbot's BYOI settings
    path("chatbots/<uuid:chatbot_id>/", views.byoi_settings, name="settings"),
    path("chatbots/<uuid:chatbot_id>/panel/", views.panel_partial, name="chatbot_panel"),
    path("chatbots/<uuid:chatbot_id>/panel/<slug:kind>/", views.section_partial, name="chatbot_section"),
    path("chatbots/<uuid:chatbot_id>/test/<slug:kind>/", views.test_start, name="chatbot_test_start"),
    path("chatbots/<uuid:chatbot_id>/components/<slug:kind>/retest/", views.component_retest, name="retest"),
    # Their data follows a switch: the offer, the copy's progress, and its actions
    path("moves/<uuid:move_id>/", views.data_move, name="data_move"),
    path("moves/<uuid:move_id>/<slug:action>/", views.data_move_action, name="data_move_action"),
]
