from django.contrib import admin

from byoi.admin import BYOIComponentInline

from .models import Chatbot, Document


@admin.register(Chatbot)
class ChatbotAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "byoi_enabled", "created"]
    list_filter = ["byoi_enabled", "account__plan"]
    search_fields = ["name", "slug", "account__name", "id"]
    readonly_fields = ["id", "created", "updated"]
    inlines = [BYOIComponentInline]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "chatbot", "created"]
    search_fields = ["title", "chatbot__name"]
