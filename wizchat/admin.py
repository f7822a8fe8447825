from django.contrib import admin

from .models import Account, Membership, Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "byoi_allowed", "max_chatbots", "max_documents", "max_messages_per_month"]
    list_filter = ["byoi_allowed"]
    search_fields = ["name", "slug"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "plan", "created"]
    list_filter = ["plan"]
    list_editable = ["plan"]
    search_fields = ["name", "memberships__user__email"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "is_owner"]
    search_fields = ["user__email", "account__name"]
    list_filter = ["is_owner"]
