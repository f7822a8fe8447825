from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/chatbots/", include("chatbots.urls")),
    path("byoi/", include("byoi.urls")),
    path("admin/", admin.site.urls),
    path("", include("chatbots.urls_api")),
]
