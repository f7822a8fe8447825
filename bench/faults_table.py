"""The fault matrix of docs/FAULTS.md, from what the fault tests measured.

  .venv/bin/python -m pytest tests/test_faults_deadlines.py tests/test_faults_chat.py \
      tests/test_faults_ingestion.py tests/test_faults_datamove.py tests/test_faults_celery.py \
      tests/test_tenant_isolation.py
  python -m bench.faults_table [test-artifacts/faults.jsonl]

Each test appends one JSON line per case (tests/faults.py); the latest line of each case wins. Prints markdown:
the matrix (peer × failure → code and seconds to report it, per activity, and items lost), then the isolation
figures and WizChat's own faults."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent / "test-artifacts" / "faults.jsonl"
ACTIVITIES = ("backend call", "chat", "ingestion", "data copy")
PEERS = ("conversations", "vector_store", "graph", "llm", "embeddings")
LABELS = {"conversations": "Customer PostgreSQL — conversations", "vector_store": "Customer PostgreSQL — vector store",
          "graph": "Customer FalkorDB", "llm": "Customer LLM endpoint", "embeddings": "Customer embeddings endpoint"}


def load(path: Path) -> dict:
    latest = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        failure = row["failure"].replace(" (just used)", "").replace(" (idle)", ", idle ≥ 2 s")
        latest[(row["peer"], failure, row["activity"])] = row
    return latest


def cell(row: dict | None) -> str:
    if row is None:
        return "—"
    return f"`{row['code']}` {row['seconds']:.1f} s"


def matrix(rows: dict) -> list[str]:
    failures = []
    for peer, failure, activity in rows:
        if peer in PEERS and activity in ACTIVITIES and failure not in failures:
            failures.append(failure)
    out = ["| peer | failure | " + " | ".join(ACTIVITIES) + " | data lost |",
           "|---|---|" + "---|" * len(ACTIVITIES) + "---|"]
    for peer in PEERS:
        for failure in failures:
            found = [rows.get((peer, failure, activity)) for activity in ACTIVITIES]
            if not any(found):
                continue
            lost = sum(r["lost"] or 0 for r in found if r is not None)
            out.append(f"| {LABELS[peer]} | {failure} | " + " | ".join(cell(r) for r in found) + f" | {lost} |")
    return out


def others(rows: dict) -> list[str]:
    out = []
    for (peer, failure, activity), row in rows.items():
        if peer in PEERS and activity in ACTIVITIES:
            continue
        extra = {k: v for k, v in row.items() if k not in ("test", "peer", "failure", "activity", "code", "seconds",
                                                             "lost", "at")}
        out.append(f"- {peer}, {failure}, {activity}: `{row['code']}`, {row['seconds']:.2f} s, lost {row['lost']}; "
                   + ", ".join(f"{k} {v}" for k, v in extra.items()))
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    rows = load(path)
    print("\n".join(matrix(rows)))
    print()
    print("\n".join(others(rows)))


if __name__ == "__main__":
    main()
