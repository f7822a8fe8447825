from django.contrib.auth import login
from django.shortcuts import redirect, render

from .accounts import account_signup
from .forms import SignupForm


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


def home(request):
    return redirect("chatbots:list" if request.user.is_authenticated else "login")
