"""Operators' data move ("migration") of a chatbot's data between WizChat's default stores and its own (BYOI) stores.

`manage.py byoi_migrate` calls `migration_plan` (validates the request, no connection made) and then
`migration_run`. For each kind — vector_store, graph, conversations — the *source* is the side the operator
moves away from and the *target* the side named by `to`: the chatbot's saved custom component, or
`byoi.resolver.default_settings(kind)`. Backends are built through the resolver's slots (the same instance
cache; a customer's component always passes the egress guard).

- Nothing in the source is ever deleted or dropped.
- Resumable and idempotent without a checkpoint table: items are read from the source in id order and every
  batch first asks the target which ids it already holds; those are skipped (a rerun after an interruption
  copies only what is missing, a rerun after success copies nothing).
- Vector store: texts, metadata and vectors are copied; when the embeddings the chatbot will query the target
  with have another dimension than the stored vectors (default MiniLM 384 → a customer's 3072) — or when
  `re_embed` is asked — the texts are embedded again with those embeddings instead.
- Graph: chunk nodes with their entities (MENTIONS) and relations (RELATED) are re-created with MERGE.
- Conversations: every message is appended by id (a repeat stores nothing).
- `switch`: after every requested kind was copied completely, enable (to custom) or disable (to default) the
  chatbot's components through byoi.services (plan-gated, audited)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.module_loading import import_string

from byoi import resolver
from byoi.audit import audit_record
from byoi.errors import BackendError, classify
from byoi.models import BYOIComponent
from byoi.registry import KINDS, STORE_KINDS, label

MIGRATABLE = STORE_KINDS
DIRECTIONS = ("custom", "default")
MAX_BATCH_SIZE = 10_000


class MigrationInvalid(Exception):
    """The request cannot run as given; the message says what to change."""


class MigrationFailed(Exception):
    """A store failed during the migration: the taxonomy's message naming the side, and its fix hint."""

    def __init__(self, kind: str, role: str, where: str, error: BackendError):
        self.kind, self.role, self.where = kind, role, where
        self.code, self.hint = error.code, error.hint
        super().__init__(f"{label(kind)}: the {role} ({where}) failed: {error.message}")


@dataclass
class Side:
    """One end of a migration: where a kind's data lives and how to reach it."""

    kind: str
    source: str  # custom | default
    slot: object = field(repr=False)

    @property
    def where(self) -> str:
        if self.source == "custom":
            location = self.slot.location()
            return f"your infrastructure, {location}" if location else "your infrastructure"
        return "WizChat default"

    def backend(self):
        return self.slot.instance()


@dataclass
class Step:
    """One kind to migrate."""

    kind: str
    source: Side
    target: Side
    component: BYOIComponent = field(repr=False)
    embeddings: Side | None = None  # embedded kinds: the embeddings the chatbot will query the target with


@dataclass
class MovePlan:
    """What byoi_migrate will copy for one chatbot: a Step per kind, in order (not a plan of wizchat.models)."""

    chatbot: object
    to: str
    steps: list[Step]
    switch: bool = False


@dataclass
class Result:
    kind: str
    source: str
    target: str
    total: int = 0
    copied: int = 0
    skipped: int = 0
    reembedded: int = 0
    complete: bool = True
    dimensions: tuple[int, int] | None = None  # (stored, target) when re-embedding
    counted_first: bool = True  # False: `total` counts what was read so far (the source was not counted first)

    def summary(self, dry_run: bool = False) -> str:
        spec = KINDS[self.kind]
        text = f"{self.kind}: {'would copy' if dry_run else 'copied'} {self.copied}, skipped {self.skipped} already present"
        if spec.embedded:
            text += f", {'would re-embed' if dry_run else 're-embedded'} {self.reembedded}"
        held = f"{self.total}" if self.complete or self.counted_first else f"at least {self.total}"
        text += f" (source holds {held} {spec.move_unit}; {self.source} → {self.target})"
        if self.dimensions:
            text += f"; vectors {self.dimensions[0]} → {self.dimensions[1]} dimensions"
        if not self.complete:
            text += "; stopped at the limit: run the command again to continue"
        return text


# --- slots ------------------------------------------------------------------------------------------------


def _side(kind: str, source: str, component: BYOIComponent | None) -> Side:
    slot = resolver.component_slot(component) if source == "custom" else resolver.default_slot(kind)
    return Side(kind, source, slot)


def _embeddings_after(chatbot, to: str) -> Side:
    """The embeddings the chatbot will use once the migration is done (the embeddings component is not moved)."""
    component = BYOIComponent.objects.filter(chatbot=chatbot, kind="embeddings", enabled=True).first()
    if component is not None and (to == "custom" or (chatbot.byoi_enabled and chatbot.account.plan.byoi_allowed)):
        return _side("embeddings", "custom", component)
    return _side("embeddings", "default", None)


# --- the plan ---------------------------------------------------------------------------------------------


def kinds_parse(text: str | None) -> list[str] | None:
    """'vector_store,graph' → ['vector_store', 'graph']; None/blank → None (every kind with a component)."""
    if text is None or not text.strip():
        return None
    kinds = []
    for raw in text.split(","):
        kind = raw.strip()
        if not kind:
            continue
        if kind not in MIGRATABLE:
            raise MigrationInvalid(f"Unknown kind {kind[:40]!r}: choose from {', '.join(MIGRATABLE)}.")
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        raise MigrationInvalid(f"--kinds is empty: choose from {', '.join(MIGRATABLE)}.")
    return kinds


def migration_plan(chatbot, to: str, kinds: list[str] | None = None, *, switch: bool = False) -> MovePlan:
    """Check the request and decide source and target per kind. Connects to nothing."""
    if to not in DIRECTIONS:
        raise MigrationInvalid(f"--to must be 'custom' or 'default', not {str(to)[:40]!r}.")
    plan = chatbot.account.plan
    if to == "custom" and not plan.byoi_allowed:
        raise MigrationInvalid(f"The account's {plan.name} plan does not include BYOI: upgrade it before moving "
                               "the chatbot's data to its own infrastructure.")
    components = {c.kind: c for c in BYOIComponent.objects.filter(chatbot=chatbot, kind__in=MIGRATABLE)}
    if kinds is None:
        kinds = [k for k in MIGRATABLE if k in components]
        if not kinds:
            raise MigrationInvalid(f"Chatbot {chatbot.id} has no custom vector store, graph or conversations "
                                   "component: there is nothing to migrate to or from.")
    steps = []
    for kind in kinds:
        kind_label = label(kind)
        component = components.get(kind)
        if component is None:
            if to == "custom":
                raise MigrationInvalid(f"Chatbot {chatbot.id} has no custom {kind_label} component: save one in its "
                                       "BYOI settings (and test it) first.")
            raise MigrationInvalid(f"Chatbot {chatbot.id} has no custom {kind_label} component: its data is already "
                                   "in WizChat's default store, there is nothing to migrate from.")
        if to == "custom" and not component.enabled and not switch:
            raise MigrationInvalid(f"The chatbot's custom {kind_label} is saved but disabled: enable it, or pass "
                                   "--switch to enable it after the copy.")
        source, target = ("default", "custom") if to == "custom" else ("custom", "default")
        step = Step(kind, _side(kind, source, component), _side(kind, target, component), component)
        if KINDS[kind].embedded:
            step.embeddings = _embeddings_after(chatbot, to)
        steps.append(step)
    return MovePlan(chatbot, to, steps, switch=switch)


# --- running it -------------------------------------------------------------------------------------------


def _guarded(step: Step, side: Side, role: str, call: Callable):
    try:
        return call()
    except MigrationFailed:
        raise
    except Exception as error:  # noqa: BLE001 - every failure is classified and named
        raise MigrationFailed(step.kind, role, side.where, classify(error)) from None


def migration_run(plan: MovePlan, *, batch_size: int = 500, dry_run: bool = False, limit: int | None = None,
                  re_embed: bool = False, progress: Callable[[str], None] | None = None,
                  queued_messages: int = 0, on_batch: Callable[[Result], None] | None = None) -> list[Result]:
    """Copy every step's data; then switch the components if asked and everything was copied.

    `on_batch(result)`: called after every batch (and progress line) with the kind's running counts.

    `queued_messages`: how many of the chatbot's messages still wait in the conversations outbox (the caller
    counts them: the outbox belongs to the conversations app, a layer above byoi); the copy says so."""
    batch_size = int(batch_size)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise MigrationInvalid(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
    if limit is not None and int(limit) < 1:
        raise MigrationInvalid("--limit must be a positive number.")
    say = progress or (lambda line: None)
    results = []
    for step in plan.steps:
        copy = import_string(KINDS[step.kind].move)
        result = Result(step.kind, step.source.where, step.target.where)
        step_say = say if on_batch is None else (lambda line, r=result: (say(line), on_batch(r)))
        copy(plan.chatbot.id, step, result, batch_size=batch_size, dry_run=dry_run, limit=limit,
             re_embed=re_embed, say=step_say, queued=queued_messages)
        results.append(result)
        if not dry_run:
            audit_record("byoi.data_migrated", chatbot=plan.chatbot, kind=step.kind, to=plan.to,
                         copied=result.copied, skipped=result.skipped, reembedded=result.reembedded,
                         complete=result.complete)
    if plan.switch and not dry_run:
        if all(r.complete for r in results):
            _switch(plan)
            say(f"switched: the chatbot now uses {'its own' if plan.to == 'custom' else 'WizChat default'} "
                f"{', '.join(label(s.kind) for s in plan.steps)}")
        else:
            say("not switched: the copy is incomplete")
    return results


def _switch(plan: MovePlan) -> None:
    from byoi import services

    chatbot = plan.chatbot
    for step in plan.steps:
        if plan.to == "custom":
            services.component_set_enabled(step.component, True)
        else:
            services.component_disable(chatbot, step.kind)
    if plan.to == "custom" and not chatbot.byoi_enabled:
        services.byoi_set_enabled(chatbot, True)


def _take(todo: list, result: Result, limit: int | None) -> list:
    """The items of this batch still allowed by --limit; marks the result incomplete when cut."""
    if limit is None:
        return todo
    room = max(0, limit - result.copied)
    if len(todo) > room:
        result.complete = False
        return todo[:room]
    return todo


# The copy functions (the registry's Kind.move) share one signature; each uses what concerns its kind.


def copy_vectors(chatbot_id, step: Step, result: Result, *, batch_size, dry_run, limit, re_embed, say,
                 queued) -> None:
    source = _guarded(step, step.source, "source", step.source.backend)
    target = _guarded(step, step.target, "target", step.target.backend)
    stored = _guarded(step, step.source, "source", lambda: source.dimensions(chatbot_id))
    if stored is None:
        say(f"{step.kind}: the source holds no chunks")
        return
    result.total = _guarded(step, step.source, "source", lambda: source.count(chatbot_id))
    embedder = _guarded(step, step.embeddings, "embeddings", step.embeddings.backend)
    wanted = int(embedder.dimensions)
    reembed = re_embed or wanted != stored
    if reembed:
        result.dimensions = (stored, wanted)
    existing = _guarded(step, step.target, "target", lambda: target.dimensions(chatbot_id))
    if existing is not None and existing != wanted:
        raise MigrationFailed(step.kind, "target", step.target.where, BackendError(
            "dimension_mismatch", f"The target already holds {existing}-dimension vectors for this chatbot, but "
                                  f"its embeddings produce {wanted}."))
    if not dry_run:
        _guarded(step, step.target, "target", lambda: target.provision(chatbot_id, wanted))
    for number, batch in enumerate(_batches(step, step.source, source.iter_chunks(chatbot_id, batch_size)), 1):
        present = _guarded(step, step.target, "target", lambda b=batch: target.ids_present(chatbot_id,
                                                                                       [c.id for c in b]))
        todo = _take([c for c in batch if c.id not in present], result, limit)
        if todo and not dry_run:
            if reembed:
                vectors = _guarded(step, step.embeddings, "embeddings",
                                   lambda t=todo: embedder.embed([c.text for c in t]))
                if len(vectors) != len(todo) or any(len(v) != wanted for v in vectors):
                    raise MigrationFailed(step.kind, "embeddings", step.embeddings.where, BackendError(
                        "dimension_mismatch", f"The embeddings did not return one {wanted}-number vector per text."))
                for chunk, vector in zip(todo, vectors, strict=True):
                    chunk.embedding = vector
            _guarded(step, step.target, "target", lambda t=todo: target.upsert(chatbot_id, t))
        result.copied += len(todo)
        result.skipped += len(present)
        result.reembedded += len(todo) if reembed else 0
        say(f"vector_store: batch {number}: {len(todo)} {'to copy' if dry_run else 'copied'}, {len(present)} "
            f"already present ({result.copied + result.skipped}/{result.total})")
        if not result.complete:
            return


def copy_graph(chatbot_id, step: Step, result: Result, *, batch_size, dry_run, limit, re_embed, say,
               queued) -> None:
    source = _guarded(step, step.source, "source", step.source.backend)
    target = _guarded(step, step.target, "target", step.target.backend)
    counts = _guarded(step, step.source, "source", lambda: source.count(chatbot_id))
    if not counts.get("nodes"):
        say("graph: the source holds no graph for this chatbot")
        return
    result.counted_first = False
    if not dry_run:
        _guarded(step, step.target, "target", lambda: target.provision(chatbot_id))
    for number, batch in enumerate(_batches(step, step.source, source.iter_chunks(chatbot_id, batch_size)), 1):
        result.total += len(batch)
        present = _guarded(step, step.target, "target",
                           lambda b=batch: target.ids_present(chatbot_id, [c.chunk_id for c in b]))
        todo = _take([c for c in batch if c.chunk_id not in present], result, limit)
        if not dry_run and todo:  # a batch a query or a few (FalkorGraph.upsert_many bounds each query)
            _guarded(step, step.target, "target", lambda t=todo: target.upsert_many(chatbot_id, t))
        result.copied += len(todo)
        result.skipped += len(present)
        say(f"graph: batch {number}: {len(todo)} chunk nodes {'to copy' if dry_run else 'copied'}, {len(present)} "
            f"already present")
        if not result.complete:
            return


def copy_messages(chatbot_id, step: Step, result: Result, *, batch_size, dry_run, limit, re_embed, say,
                  queued) -> None:
    source = _guarded(step, step.source, "source", step.source.backend)
    target = _guarded(step, step.target, "target", step.target.backend)
    if queued:
        say(f"conversations: {queued} message(s) still wait in the outbox; they go to the store the chatbot "
            "uses when they are delivered (run the command again afterwards to copy them)")
    result.total = _guarded(step, step.source, "source", lambda: source.count(chatbot_id))
    if not result.total:
        say("conversations: the source holds no messages")
        return
    if not dry_run:
        _guarded(step, step.target, "target", lambda: target.provision(chatbot_id))
    for number, batch in enumerate(_batches(step, step.source, source.iter_messages(chatbot_id, batch_size)), 1):
        present = _guarded(step, step.target, "target",
                           lambda b=batch: target.ids_present(chatbot_id, [m.id for m in b]))
        todo = _take([m for m in batch if m.id not in present], result, limit)
        stored = 0
        if not dry_run:
            for message in todo:
                if _guarded(step, step.target, "target", lambda m=message: target.append(chatbot_id, m)):
                    stored += 1
        else:
            stored = len(todo)
        result.copied += stored
        result.skipped += len(present) + len(todo) - stored
        say(f"conversations: batch {number}: {stored} messages {'to copy' if dry_run else 'copied'}, "
            f"{len(batch) - stored} already present ({result.copied + result.skipped}/{result.total})")
        if not result.complete:
            return


def _batches(step: Step, side: Side, iterator):
    """The source's batches, each read failure named as the source's."""
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001
            raise MigrationFailed(step.kind, "source", side.where, classify(error)) from None
        yield batch
