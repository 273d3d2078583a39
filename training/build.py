"""The data pipeline: xLAM examples → irrelevance augmentation → function masking → rendered rows."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hammer.training.bfcl_source import bfcl_examples, parse_source
from hammer.training.heldout import TEST_CATEGORIES, drop_test_overlap, load_test_set
from hammer.training.irrelevance import add_irrelevance
from hammer.training.masking import mask_functions
from hammer.training.render import to_prompt_completion
from hammer.training.xlam import Example, RowError, read_xlam

from hammer.prompt_format import PromptFormat

DEFAULT_MASKING_RATIO = 0.33
DEFAULT_IRRELEVANCE_RATIO = 0.10
ON_ERROR = ("stop", "skip")


@dataclass(frozen=True)
class BuildReport:
    """What the pipeline did; ``str()`` is the line ``hammer data build`` prints."""

    source_examples: int
    irrelevant: int
    masked: int
    total: int
    seconds: float
    skipped: tuple[RowError, ...] = ()  # bad source rows left out (``on_error="skip"``)
    source_note: str = ""  # what a built-in source made of its data, and what overlapped the test

    def skipped_summary(self, shown: int = 3) -> str:
        """``skipped 5 bad rows: row 3 (line 4): 'tools' is missing; ...`` (the first ``shown``)."""
        if not self.skipped:
            return ""
        reasons = "; ".join(str(e) for e in self.skipped[:shown])
        rest = f"; and {len(self.skipped) - shown} more" if len(self.skipped) > shown else ""
        return f"skipped {len(self.skipped)} bad row{'s' if len(self.skipped) != 1 else ''}: {reasons}{rest}"

    def __str__(self) -> str:
        return (f"{self.source_examples} source examples + {self.irrelevant} irrelevance examples = "
                f"{self.total} rows; irrelevance share {self.irrelevant / max(self.total, 1):.3f}, "
                f"masked share {self.masked / max(self.total, 1):.3f}; {self.seconds:.1f}s "
                f"({self.total / max(self.seconds, 1e-9):,.0f} rows/s)")


def build_examples(examples: Sequence[Example], masking_ratio: float = DEFAULT_MASKING_RATIO,
                   irrelevance_ratio: float = DEFAULT_IRRELEVANCE_RATIO, seed: int = 0) -> list[Example]:
    """Augmented and masked examples, shuffled; the same seed gives the same list.

    Exactly ``round(masking_ratio * n)`` examples are masked (irrelevance ones included, as in
    the released code), so the share is the parameter rather than a binomial draw.
    """
    if not 0 <= masking_ratio <= 1:
        raise ValueError(f"masking ratio must be in [0, 1], got {masking_ratio}")
    rng = random.Random(seed)
    augmented = add_irrelevance(examples, irrelevance_ratio, rng)
    rng.shuffle(augmented)
    masked = set(rng.sample(range(len(augmented)), round(masking_ratio * len(augmented))))
    return [mask_functions(e, rng) if i in masked else e for i, e in enumerate(augmented)]


def build_rows(examples: Sequence[Example], masking_ratio: float = DEFAULT_MASKING_RATIO,
               irrelevance_ratio: float = DEFAULT_IRRELEVANCE_RATIO, seed: int = 0,
               prompt_format: PromptFormat = "hammer-2.1") -> tuple[list[dict[str, Any]], BuildReport]:
    """Prompt–completion rows for ``examples`` and a report of what was done."""
    start = time.perf_counter()
    built = build_examples(examples, masking_ratio, irrelevance_ratio, seed)
    rows = [to_prompt_completion(e, prompt_format) for e in built]
    report = BuildReport(
        source_examples=len(examples),
        irrelevant=sum(r["irrelevant"] for r in rows),
        masked=sum(r["masked"] for r in rows),
        total=len(rows),
        seconds=time.perf_counter() - start,
    )
    return rows, report


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def sample_examples(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """``limit`` examples drawn at random (in their original order), or all of them.

    The draw depends on the seed and the count only, so builds with different ratios but the
    same seed and limit start from the same source examples (an ablation's arms).

    >>> sample_examples([{"id": i} for i in range(10)], 3, 0) == sample_examples([{"id": i} for i in range(10)], 3, 0)
    True
    >>> len(sample_examples([{"id": i} for i in range(10)], 30, 0))
    10
    """
    if limit is None or limit >= len(examples):
        return list(examples)
    picked = sorted(random.Random(f"{seed}:sources").sample(range(len(examples)), limit))
    return [examples[i] for i in picked]


def load_source(source: str | Path, seed: int = 0) -> tuple[list[Example], list[RowError], str]:
    """Examples of a file, hub name or built-in source (``bfcl-offline[:categories]``), the bad
    rows, and a note on what a built-in source used and dropped."""
    categories = parse_source(str(source))
    if categories is None:
        examples, errors = read_xlam(source)
        return examples, errors, ""
    heldout = load_test_set()
    examples, report = bfcl_examples(categories, seed, exclude_functions=heldout.functions)
    kept, dropped = drop_test_overlap(examples, heldout)
    note = (f"{report}; dropped {sum(dropped.values())} examples that overlap the BFCL test "
            f"({', '.join(TEST_CATEGORIES)}): {dropped['query']} by query, {dropped['function']} by function")
    return kept, [], note


def build(source: str | Path, output: str | Path, masking_ratio: float = DEFAULT_MASKING_RATIO,
          irrelevance_ratio: float = DEFAULT_IRRELEVANCE_RATIO, seed: int = 0,
          prompt_format: PromptFormat = "hammer-2.1", on_error: str = "stop",
          max_examples: int | None = None) -> BuildReport:
    """Load xLAM data from a file, hub name or ``bfcl-offline``, build the training rows, write
    them as JSON Lines; ``max_examples`` source examples at most (``sample_examples``).

    Every source row is checked first. ``on_error="stop"`` raises ``RowError`` for the first bad
    row (nothing is written); ``"skip"`` leaves bad rows out and lists them in the report.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    examples, errors, note = load_source(source, seed)
    if errors and on_error == "stop":
        first = errors[0]
        more = f"; {len(errors) - 1} more bad row{'s' if len(errors) > 2 else ''}" if len(errors) > 1 else ""
        raise RowError(first.row, f"{first.problem} (build stopped{more}; --on-error skip leaves bad rows out)",
                       first.line)
    if not examples:
        bad = f" ({len(errors)} bad row{'s' if len(errors) != 1 else ''}, first: {errors[0]})" if errors else ""
        raise ValueError(f"{source} has no valid example{bad}")
    rows, report = build_rows(sample_examples(examples, max_examples, seed), masking_ratio, irrelevance_ratio,
                              seed, prompt_format)
    write_jsonl(rows, output)
    return replace(report, skipped=tuple(errors), source_note=note)
