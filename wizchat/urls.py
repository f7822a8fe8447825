from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.decorators.http import require_http_methods

from . import views
from .forms import LoginForm

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    # Django's form views would also take PUT as a POST: the log-in page takes exactly what it serves.
    path("login/", require_http_methods(["GET", "POST"])(
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LoginForm)), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/chatbots/", include("chatbots.urls")),
    path("byoi/", include("byoi.urls")),
    path("admin/", admin.site.urls),
    path("", include("chatbots.urls_api")),
]
