"""Entity and relation extraction for the knowledge graph.

The default ("rules") needs no model, so it works with the embedded defaults:
- an entity is a run of capitalised words ("Bring Your Own Infrastructure", "Azure OpenAI"), a CamelCase or
  mixed-case name ("FalkorDB", "pgvector" is missed: lowercase words are not names), or an acronym ("BYOI",
  "LLM"); a capitalised word that only starts a sentence and is a common word ("The", "Use") is not one;
- two entities in the same sentence are related. The relation type is the short phrase between them when it
  is one to three lowercase words ("Custom FalkorDB" -uses-> ...: USES), otherwise RELATED_TO.

When the chatbot is set to "llm" extraction, the chatbot's LLM is asked for JSON; an answer that is not
valid JSON falls back to the rules for that chunk (the same component stays in use — nothing goes to
WizChat's defaults)."""

from __future__ import annotations

import json
import re

from byoi.backends.base import Entity, Relation

STOPWORDS = {
    "a", "an", "the", "this", "that", "these", "those", "it", "its", "if", "in", "on", "at", "to", "for", "of",
    "and", "or", "but", "by", "with", "from", "as", "is", "are", "be", "was", "were", "you", "your", "we", "our",
    "they", "their", "he", "she", "his", "her", "i", "my", "me", "use", "uses", "click", "go", "check", "set",
    "when", "where", "what", "which", "who", "why", "how", "all", "any", "each", "every", "no", "not", "yes",
    "after", "before", "then", "there", "here", "also", "only", "some", "step", "note", "see", "do", "does",
    "can", "may", "must", "should", "will", "would", "one", "two", "three", "first", "next", "last", "new",
    "toggle", "fill", "complete", "scroll", "create", "test", "verify", "confirm", "match", "try", "enable",
    "connect", "replace", "moving", "migrate", "disable", "never", "rotate", "monitor", "ask",
}
MAX_ENTITY_WORDS = 5
MAX_ENTITIES_PER_SENTENCE = 8

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# A word that starts with an uppercase letter (Azure, OpenAI, FalkorDB, BYOI, SmolLM2, Pro+).
_CAP = r"[A-Z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*\+?"
# Joiners allowed inside a multi-word name: "Bring Your Own Infrastructure", "Pro, Pro+", not "and".
_NAME = re.compile(rf"{_CAP}(?:\s+(?:of\s+|de\s+)?{_CAP})*")
_REL_WORDS = re.compile(r"^[a-z]+(?:\s[a-z]+){0,2}$")


def _sentences(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    for part in _SENTENCE.split(text):
        start = text.find(part, pos)
        pos = start + len(part)
        if part.strip():
            out.append((start, part))
    return out


def _names(sentence: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each entity in a sentence, in order."""
    found = []
    for match in _NAME.finditer(sentence):
        words = match.group(0).split()
        start = match.start()
        # Drop common words that are capitalised only because they start the sentence or a list item.
        while words and words[0].lower() in STOPWORDS:
            start += sentence[start:].find(words[0]) + len(words[0])
            start += len(sentence[start:]) - len(sentence[start:].lstrip())
            words = words[1:]
        if not words:
            continue
        if len(words) > MAX_ENTITY_WORDS:
            words = words[:MAX_ENTITY_WORDS]
        name = re.sub(r"'s$", "", " ".join(words)).strip(" -'")
        if len(name) < 2 or (len(words) == 1 and name.lower() in STOPWORDS):
            continue
        end = start + len(" ".join(words))
        found.append((name, start, end))
    return found


def _relation_type(between: str) -> str:
    between = between.strip(" ,;:()\"'").lower()
    if _REL_WORDS.match(between) and between not in {"and", "or", "nor", "of", "to", "vs"}:
        return re.sub(r"[^A-Z]+", "_", between.upper()).strip("_")[:40] or "RELATED_TO"
    return "RELATED_TO"


def extract_rules(text: str) -> tuple[list[Entity], list[Relation]]:
    """Entities (unique by name) and relations (unique by source, target, type) in `text`."""
    entities: dict[str, Entity] = {}
    relations: dict[tuple, Relation] = {}
    for _, sentence in _sentences(text):
        names = _names(sentence)[:MAX_ENTITIES_PER_SENTENCE]
        for name, _, _ in names:
            entities.setdefault(name.lower(), Entity(name=name))
        for i, (a, _, a_end) in enumerate(names):
            for b, b_start, _ in names[i + 1:]:
                if a.lower() == b.lower():
                    continue
                rel = _relation_type(sentence[a_end:b_start]) if b_start >= a_end else "RELATED_TO"
                relations.setdefault((a.lower(), b.lower(), rel), Relation(source=a, target=b, type=rel))
    return list(entities.values()), list(relations.values())


def mentioned_entities(text: str) -> list[str]:
    """Names in a question or chunk, for the graph neighbourhood lookup at chat time."""
    seen: dict[str, str] = {}
    for _, sentence in _sentences(text):
        for name, _, _ in _names(sentence):
            seen.setdefault(name.lower(), name)
    return list(seen.values())


LLM_PROMPT = (
    "Extract the named entities (products, organisations, people, places, technologies) and the relations "
    "between them from the text. Answer with JSON only, in this shape: "
    '{"entities": ["Name", ...], "relations": [["Source", "RELATION_TYPE", "Target"], ...]}'
)


def extract_llm(llm, text: str) -> tuple[list[Entity], list[Relation]]:
    """Ask the chatbot's LLM; fall back to the rules when its answer is not the JSON asked for.
    BackendError from the LLM propagates: a failing component is reported, never papered over."""
    answer = llm.chat([{"role": "system", "content": LLM_PROMPT}, {"role": "user", "content": text}],
                      max_tokens=512, temperature=0)
    try:
        start, end = answer.index("{"), answer.rindex("}") + 1
        data = json.loads(answer[start:end])
        entities = {str(n).strip(): Entity(name=str(n).strip()) for n in data.get("entities", []) if str(n).strip()}
        relations = []
        for source, rel, target in data.get("relations", []):
            source, target = str(source).strip(), str(target).strip()
            if not source or not target:
                continue
            entities.setdefault(source, Entity(name=source))
            entities.setdefault(target, Entity(name=target))
            rel_type = re.sub(r"[^A-Z]+", "_", str(rel).upper()).strip("_")[:40] or "RELATED_TO"
            relations.append(Relation(source=source, target=target, type=rel_type))
        if not entities:
            raise ValueError("no entities")
        return list(entities.values()), relations
    except (ValueError, TypeError, AttributeError):
        return extract_rules(text)
