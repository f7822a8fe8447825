"""Admin for BYOI: components (secrets never shown, enabling plan-gated), Test Connection runs and the
audit trail (read-only)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import BaseInlineFormSet

from wizchat.admin import ReadOnlyAdmin
from wizchat.plans import plan_require_byoi

from . import services
from .models import AuditEvent, BYOIComponent, ConnectionTest
from .resolver import location_summary

_COMPONENT_READONLY = ["kind", "location", "secrets_display", "status", "last_checked", "error_code",
                       "error_message"]


class _ComponentDisplay:
    """Read-only columns shared by the inline and the component admin."""

    @admin.display(description="Location")
    def location(self, obj):
        return location_summary(obj.kind, obj.values) if obj and obj.pk else ""

    @admin.display(description="Secrets")
    def secrets_display(self, obj):
        if not obj or not obj.pk:
            return "(not set)"
        stored = obj.secrets
        parts = [f"{obj.spec.field(name).label}: {'••••• (set)' if stored.get(name) else '(not set)'}"
                 for name in obj.spec.secret_fields]
        return "; ".join(parts) or "(none)"


class ComponentAdminForm(forms.ModelForm):
    class Meta:
        model = BYOIComponent
        fields = ["enabled"]


class _ComponentFormSet(BaseInlineFormSet):
    request = None

    def clean(self):
        # The chatbot admin's own "BYOI enabled" box is plan-gated here, where BYOI code sees the change.
        super().clean()
        chatbot = self.instance
        if chatbot is None or not chatbot.pk or not chatbot.byoi_enabled:
            return
        was_enabled = type(chatbot).objects.filter(pk=chatbot.pk, byoi_enabled=True).exists()
        if not was_enabled:
            try:
                plan_require_byoi(chatbot.account)
            except PermissionDenied as error:
                raise ValidationError(str(error)) from None

    def save_existing(self, form, obj, commit=True):
        # Route the only editable field through the service: plan gating and an audit event.
        if "enabled" in form.changed_data:
            actor = getattr(self.request, "user", None)
            wanted = obj.enabled
            obj.enabled = not wanted
            return services.component_set_enabled(obj, wanted, actor=actor)
        return obj


class BYOIComponentInline(_ComponentDisplay, admin.StackedInline):
    model = BYOIComponent
    form = ComponentAdminForm
    formset = _ComponentFormSet
    extra = 0
    can_delete = False
    fields = ["kind", "enabled", "location", "secrets_display", "status", "last_checked", "error_code",
              "error_message"]
    readonly_fields = _COMPONENT_READONLY
    show_change_link = True

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request
        return formset

    def has_add_permission(self, request, obj=None):
        return False  # components are created with their secrets through the BYOI form, not here


@admin.register(BYOIComponent)
class BYOIComponentAdmin(_ComponentDisplay, admin.ModelAdmin):
    form = ComponentAdminForm
    list_display = ["chatbot", "kind", "enabled", "status", "last_checked", "error_code"]
    list_filter = ["kind", "enabled", "status"]
    search_fields = ["chatbot__name", "chatbot__id"]
    fields = ["chatbot", "kind", "enabled", "location", "secrets_display", "status", "last_checked",
              "error_code", "error_message", "updated"]
    readonly_fields = ["chatbot", *_COMPONENT_READONLY, "updated"]
    actions = ["rerun_test_connection"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        if "enabled" in form.changed_data:
            wanted = obj.enabled
            obj.enabled = not wanted
            services.component_set_enabled(obj, wanted, actor=request.user)

    def delete_model(self, request, obj):
        services.component_delete(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("chatbot__account"):
            services.component_delete(obj, actor=request.user)

    @admin.action(description="Re-run Test Connection")
    def rerun_test_connection(self, request, queryset):
        started = 0
        for component in queryset.select_related("chatbot__account__plan"):
            try:
                services.connection_test_retest(component, actor=request.user)
                started += 1
            except (PermissionDenied, services.RateLimited, services.ComponentInvalid, ValidationError) as error:
                self.message_user(request, f"{component}: {error}", messages.ERROR)
        if started:
            self.message_user(request, f"Started Test Connection for {started} component(s).", messages.SUCCESS)


@admin.register(ConnectionTest)
class ConnectionTestAdmin(admin.ModelAdmin):
    list_display = ["id", "account", "kind", "state", "error_code", "created", "finished"]
    list_filter = ["kind", "state"]
    fields = ["id", "account", "chatbot", "component", "kind", "location", "state", "error_code", "steps",
              "created", "finished"]
    readonly_fields = fields

    @admin.display(description="Location")
    def location(self, obj):
        return location_summary(obj.kind, obj.values)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created", "action", "account", "actor", "chatbot_id"]
    list_filter = ["action"]
    search_fields = ["action", "chatbot_id"]
    fields = ["created", "action", "account", "actor", "chatbot_id", "detail"]
    readonly_fields = fields
