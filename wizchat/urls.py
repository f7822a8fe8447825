from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods
from django.views.generic import RedirectView

from . import views
from .forms import LoginForm

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    # Django's form views would also take PUT as a POST (and its redirects every method): each route here takes
    # exactly what it serves (tests/test_security_urls.py).
    path("login/", require_http_methods(["GET", "POST"])(
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LoginForm)), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account_page, name="account"),
    path("account/password/", require_http_methods(["GET", "POST"])(auth_views.PasswordChangeView.as_view(
        template_name="account/password.html", success_url=reverse_lazy("password_changed"))), name="password_change"),
    path("account/password/changed/", auth_views.PasswordChangeDoneView.as_view(
        template_name="account/password_changed.html"), name="password_changed"),
    path("account/team/", views.team_page, name="team"),
    path("account/team/invites/", views.team_invite, name="team_invite"),
    path("account/team/invites/<uuid:invite_id>/revoke/", views.team_invite_revoke, name="team_invite_revoke"),
    path("account/team/members/<uuid:member_id>/role/", views.team_member_role, name="team_member_role"),
    path("account/team/members/<uuid:member_id>/remove/", views.team_member_remove, name="team_member_remove"),
    path("account/team/start/", views.team_start, name="team_start"),
    path("invite/<str:token>/", views.invite_accept, name="invite_accept"),
    path("account/plan/", views.plan_page, name="plan"),
    path("dashboard/api-keys/", views.api_keys_page, name="api_keys"),
    path("docs/", views.docs_page, name="docs"),
    path("favicon.ico", require_GET(RedirectView.as_view(url=static("favicon.svg"), permanent=True))),
    path("dashboard/chatbots/", include("chatbots.urls")),
    path("byoi/", include("byoi.urls")),
    path("admin/", admin.site.urls),
    path("", include("chatbots.urls_api")),
    path("", include("chatbots.urls_internal")),
]

handler403 = "wizchat.views.permission_denied"
handler404 = "wizchat.views.page_not_found"
handler500 = "wizchat.views.server_error"
