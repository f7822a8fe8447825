"""Staff's admin. Membership changes keep to the team's rules (wizchat.team.owners_keep: a team always keeps an
owner; a refusal is the form's error and nothing is saved) and go to the team's audit trail as staff's."""

from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as admin_delete_selected
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.shortcuts import redirect
from django.urls import reverse

from .models import Account, Membership, Plan, Role, TeamEvent, UpgradeRequest
from .plans import upgrade_request_apply
from .team import TeamRefused, event_record, owners_keep

SWAP_REFUSED = ("A membership cannot be handed to another user: remove it and add the other user's instead (each "
                "change is in the team's audit trail).")


class ReadOnlyAdmin(admin.ModelAdmin):
    """An audit trail in the admin: staff read it; nobody adds, changes or deletes an entry."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "byoi_allowed", "max_chatbots", "max_documents", "max_messages_per_month"]
    list_filter = ["byoi_allowed"]
    search_fields = ["name", "slug"]


def _owners_keep(account, changes, added_owners=0) -> None:
    try:
        owners_keep(account, changes, added_owners=added_owners)
    except TeamRefused as refused:
        raise forms.ValidationError(str(refused)) from None


def _record(request, account, action, membership, **roles) -> None:
    event_record(account, action, actor=request.user, target=membership.user, by_staff=True, **roles)


class MembershipFormSet(BaseInlineFormSet):
    """An account's memberships edited together: the rule holds for the whole change (demote one owner while
    making another is fine; demoting or deleting every owner is not)."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        changes, added_owners = {}, 0
        for index, form in enumerate(self.forms):
            deleted = self.can_delete and self._should_delete_form(form)
            if index >= self.initial_form_count():
                if form.has_changed() and not deleted and form.cleaned_data.get("role") == Role.OWNER:
                    added_owners += 1
            elif deleted:
                changes[form.instance.pk] = None
            elif "user" in form.changed_data:
                raise forms.ValidationError(SWAP_REFUSED)
            elif "role" in form.changed_data:
                changes[form.instance.pk] = form.cleaned_data["role"]
        if changes:
            _owners_keep(self.instance, changes, added_owners)

    def save(self, commit=True):
        """Save, and record each membership added, changed or deleted as staff's team event."""
        self.stored = dict(Membership.objects.filter(pk__in=[f.instance.pk for f in self.initial_forms])
                           .values_list("pk", "role"))
        saved = super().save(commit)
        for member, fields in self.changed_objects:
            if "role" in fields and self.stored.get(member.pk) != member.role:
                _record(self.request, self.instance, TeamEvent.Action.ROLE_CHANGED, member,
                        previous_role=self.stored.get(member.pk, ""), role=member.role)
        for member in self.new_objects:
            _record(self.request, self.instance, TeamEvent.Action.ADDED, member, role=member.role)
        return saved

    def delete_existing(self, obj, commit=True):
        if commit:
            _record(self.request, self.instance, TeamEvent.Action.REMOVED, obj,
                    previous_role=self.stored.get(obj.pk, ""))
        super().delete_existing(obj, commit)


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    autocomplete_fields = ["user"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request  # the staff user the events name
        return formset


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "plan", "created"]
    list_filter = ["plan"]
    list_editable = ["plan"]
    search_fields = ["name", "memberships__user__email"]
    inlines = [MembershipInline]


class MembershipForm(forms.ModelForm):
    """One membership changed by staff: demoting the team's last owner, or moving them to another team, is
    refused with the team page's message."""

    class Meta:
        model = Membership
        fields = ["user", "account", "role"]

    def clean(self):
        cleaned = super().clean()
        stored = Membership.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        if stored is None or self.errors:
            return cleaned
        if "user" in self.changed_data:
            raise forms.ValidationError(SWAP_REFUSED)
        role = None if cleaned["account"].pk != stored.account_id else cleaned["role"]
        if role != stored.role:
            _owners_keep(stored.account, {stored.pk: role})
        return cleaned


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "account", "role"]
    search_fields = ["user__email", "account__name"]
    list_filter = ["role"]
    actions = ["delete_selected"]

    def save_model(self, request, obj, form, change):
        stored = Membership.objects.select_related("account").filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        if stored is None:
            _record(request, obj.account, TeamEvent.Action.ADDED, obj, role=obj.role)
        elif stored.account_id != obj.account_id:  # moved: out of one team, into another
            _record(request, stored.account, TeamEvent.Action.REMOVED, obj, previous_role=stored.role)
            _record(request, obj.account, TeamEvent.Action.ADDED, obj, role=obj.role)
        elif stored.role != obj.role:
            _record(request, obj.account, TeamEvent.Action.ROLE_CHANGED, obj, previous_role=stored.role,
                    role=obj.role)

    def delete_view(self, request, object_id, extra_context=None):
        """The confirmation page and the deletion, refused for a team's last owner (the rows stay locked from the
        check to the deletion)."""
        with transaction.atomic():
            member = self.get_object(request, unquote(object_id))
            if member is not None:
                try:
                    owners_keep(member.account, {member.pk: None})
                except TeamRefused as refused:
                    self.message_user(request, f"Nothing deleted: {refused}", messages.ERROR)
                    return redirect(reverse("admin:wizchat_membership_change", args=[member.pk]))
            return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        _record(request, obj.account, TeamEvent.Action.REMOVED, obj, previous_role=obj.role)
        super().delete_model(request, obj)

    @admin.action(permissions=["delete"], description=admin_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        """Django's "delete selected", refused (nothing deleted) when it would leave a team without an owner."""
        with transaction.atomic():
            leaving = defaultdict(dict)
            for member in queryset.select_related("account"):
                leaving[member.account][member.pk] = None
            for account, changes in leaving.items():
                try:
                    owners_keep(account, changes)
                except TeamRefused as refused:
                    self.message_user(request, f"Nothing deleted: {refused}", messages.ERROR)
                    return None
            return admin_delete_selected(self, request, queryset)

    def delete_queryset(self, request, queryset):
        for member in queryset.select_related("account", "user"):
            _record(request, member.account, TeamEvent.Action.REMOVED, member, previous_role=member.role)
        super().delete_queryset(request, queryset)


@admin.register(TeamEvent)
class TeamEventAdmin(ReadOnlyAdmin):
    """The teams' audit trail (wizchat.team), read-only: invites, joins, role changes and removals."""

    list_display = ["created", "account", "actor_email", "action", "target_email", "previous_role", "role",
                    "by_staff"]
    list_filter = ["action", "by_staff"]
    search_fields = ["account__name", "actor_email", "target_email"]
    list_select_related = ["account"]
    fields = ["created", "account", "actor", "actor_email", "by_staff", "action", "target_email", "previous_role",
              "role", "invite"]
    readonly_fields = fields


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
