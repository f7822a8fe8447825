from django import forms

from .models import Chatbot


class KnowledgeSettingsForm(forms.ModelForm):
    """How documents are split and how the knowledge graph is built; applies to documents added from now on."""

    class Meta:
        model = Chatbot
        fields = ["chunk_size", "chunk_overlap", "entity_extraction"]
        labels = {"chunk_size": "Chunk size (characters)", "chunk_overlap": "Chunk overlap (characters)",
                  "entity_extraction": "Entity extraction"}

    def clean_chunk_size(self):
        size = self.cleaned_data["chunk_size"]
        if not 200 <= size <= 8000:
            raise forms.ValidationError("Use a chunk size between 200 and 8,000 characters.")
        return size

    def clean(self):
        data = super().clean()
        size, overlap = data.get("chunk_size"), data.get("chunk_overlap")
        if size and overlap is not None and overlap > size // 2:
            self.add_error("chunk_overlap", f"Keep the overlap at or under half the chunk size ({size // 2}).")
        return data
