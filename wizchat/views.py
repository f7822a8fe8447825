from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .accounts import account_signup
from .forms import LoginForm, SignupForm
from .security import login_account_wait


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("chatbots:list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = account_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            team_name=form.cleaned_data["team_name"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chatbots:list")
    return render(request, "registration/signup.html", {"form": form})


@require_GET
def home(request):
    return redirect("chatbots:list" if request.user.is_authenticated else "login")


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response (settings.AXES_LOCKOUT_CALLABLE): the log-in page again, saying for how long
    this account cannot be tried from this address. The password is never echoed, nor read here."""
    from axes.helpers import get_client_username

    username = get_client_username(request, credentials) or ""
    wait = max(1, login_account_wait(request, username))
    refusal = (f"Too many failed log-ins for this account from your network. For your security, it is paused "
               f"here: try again in {wait} minute{'s' if wait != 1 else ''}. Other devices and networks are "
               "not affected.")
    form = LoginForm(request, initial={"username": username[:150]}, refusal=refusal)
    return render(request, "registration/login.html", {"form": form, "next": request.POST.get("next", "")},
                  status=429)
