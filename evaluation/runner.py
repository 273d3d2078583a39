"""Send every entry to one endpoint (optionally masked), score each reply, keep every record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hammer.evaluation.bfcl_tools import to_openai_tools
from hammer.evaluation.client import Endpoint, complete, make_client
from hammer.evaluation.entries import Entry
from hammer.evaluation.masking import mask_entry
from hammer.evaluation.progress import Progress
from hammer.evaluation.scoring import score


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    timeout_s: float = 120.0
    retries: int = 2
    max_tokens: int = 512
    seed: int = 0


def request_for(entry: Entry, masked: bool, seed: int) -> tuple[Entry, list[dict[str, Any]], dict[str, str]]:
    """The entry as sent (masked or not), its tools, and sent name → scored name."""
    if entry.tools is not None:  # local data sets: tools are sent as given, never masked
        return entry, entry.tools, {t["function"]["name"]: t["function"]["name"] for t in entry.tools}
    sent = mask_entry(entry, seed) if masked else entry
    tools, names = to_openai_tools(sent.functions)
    return sent, tools, names


def run_entries(endpoint: Endpoint, entries: list[Entry], masked: bool, options: RunOptions,
                on_record: Callable[[dict[str, Any]], None] = lambda record: None) -> list[dict[str, Any]]:
    """One record per entry, in entry order: request, reply and verdict; ``on_record`` sees each as it lands."""
    client = make_client(endpoint, options.timeout_s)
    description = endpoint.label + (" (masked)" if masked else "")
    progress = Progress(len(entries), description)
    tally = {"passed": 0, "errors": 0}

    def one(entry: Entry) -> dict[str, Any]:
        sent, tools, names = request_for(entry, masked, options.seed)
        reply = complete(client, endpoint.model, sent.messages, tools, options.max_tokens, options.retries)
        verdict = score(sent, tools, names, reply)
        return {"id": entry.id, "category": entry.category, "scoring": entry.scoring, "masked": masked,
                "request": {"messages": sent.messages, "tools": tools}, "answers": sent.answers,
                "reply": dataclasses.asdict(reply), "verdict": dataclasses.asdict(verdict)}

    records: list[dict[str, Any]] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            for record in pool.map(one, entries):
                records.append(record)
                on_record(record)
                tally["passed"] += record["verdict"]["passed"]
                tally["errors"] += record["reply"]["error"] is not None
                progress.update(tally["passed"], tally["errors"])
    finally:
        progress.close()
    return records
