from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm

from .security import login_address_wait
from .textcheck import guard_fields


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=150)
    team_name = forms.CharField(max_length=100, required=False, label="Team name")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        guard_fields(self, {"email": "the e-mail address", "team_name": "the team name"})

    def clean_email(self):
        email = self.cleaned_data["email"].lower()
        User = get_user_model()
        if User.objects.filter(username=email).exists() or User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this e-mail already exists. Log in instead.")
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = get_user_model()(username=cleaned.get("email", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class LoginForm(AuthenticationForm):
    """Django's log-in form, stopped before any password is checked while the client address is throttled
    (wizchat.security); the per-account lockout is django-axes' (wizchat.views.login_locked_out says so).
    `refusal` shows a lockout's message above the fields of an unbound form."""

    def __init__(self, request=None, *args, refusal: str = "", **kwargs):
        super().__init__(request, *args, **kwargs)
        self.refusal = refusal

    def non_field_errors(self):
        if self.refusal:
            return self.error_class([self.refusal], error_class="nonfield", renderer=self.renderer)
        return super().non_field_errors()

    def clean(self):
        wait = login_address_wait(self.request)
        if wait:
            raise forms.ValidationError(
                f"Too many failed log-ins from your network. For your security, log-ins from it are paused: "
                f"try again in {wait} minute{'s' if wait != 1 else ''}.", code="throttled")
        return super().clean()


class InviteSignupForm(SignupForm):
    """Sign-up through an invite link: the team is the invite's, so no team name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["team_name"]
