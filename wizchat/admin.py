from django.contrib import admin, messages

from .models import Account, Membership, Plan, UpgradeRequest
from .plans import upgrade_request_apply


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
    list_display = ["user", "account", "role"]
    search_fields = ["user__email", "account__name"]
    list_filter = ["role"]


@admin.register(UpgradeRequest)
class UpgradeRequestAdmin(admin.ModelAdmin):
    """Customers' requests for another plan (the Plan page's form). "Apply" moves the account to the plan."""

    list_display = ["account", "current_plan", "plan", "requested_by", "status", "created", "handled"]
    list_filter = ["status", "plan"]
    search_fields = ["account__name", "requested_by__email", "message"]
    readonly_fields = ["account", "requested_by", "current_plan", "plan", "message", "created", "handled"]
    fields = ["account", "requested_by", "current_plan", "plan", "message", "status", "created", "handled"]
    actions = ["apply", "decline"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Apply: move the accounts to the plans they asked for")
    def apply(self, request, queryset):
        open_requests = queryset.filter(status=UpgradeRequest.Status.OPEN).select_related("account", "plan")
        for upgrade in open_requests:
            upgrade_request_apply(upgrade)
        self.message_user(request, f"{len(open_requests)} account(s) moved to the plan they asked for.",
                          messages.SUCCESS)

    @admin.action(description="Decline the selected requests")
    def decline(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(status=UpgradeRequest.Status.OPEN).update(status=UpgradeRequest.Status.DECLINED,
                                                                           handled=timezone.now())
        self.message_user(request, f"{count} request(s) declined.", messages.SUCCESS)
