from django import forms

from wizchat.textcheck import guard_fields

from .models import Chatbot


class ChatbotForm(forms.ModelForm):
    class Meta:
        model = Chatbot
        fields = ["name", "instructions"]
        widgets = {"instructions": forms.Textarea(attrs={"rows": 5})}
        error_messages = {
            "name": {
                "required": "Give your chatbot a name.",
                "max_length": "Keep the name to %(limit_value)d characters or fewer (it has %(show_value)d).",
            }
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        guard_fields(self, {"name": "the name", "instructions": "the instructions"}, multiline=("instructions",))

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give your chatbot a name.")
        return name
