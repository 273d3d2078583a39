"""Which entries of a category ``--limit N`` runs: N spread over the whole category, not its first N.

BFCL's files are not shuffled: the first entries of a category are among its easiest (on
``simple_python`` the embedded model scores 68% on the first 25 and about 20% on entries spread over
the category), so a prefix overstates accuracy. The category is cut into N equal strata and one
entry is drawn from each, with a generator seeded by the seed and the category name: the same
entries every run, whatever other categories run with it.
"""

from __future__ import annotations

import random


def spread_indices(total: int, limit: int | None, seed: int, key: str, first: bool = False) -> list[int]:
    """Sorted indices of the entries to run out of ``total``; ``first`` takes the first ``limit`` instead.

    >>> spread_indices(10, None, 0, "c")
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> spread_indices(100, 3, 0, "c", first=True)
    [0, 1, 2]
    >>> picked = spread_indices(100, 4, 0, "c")
    >>> [i // 25 for i in picked]  # one entry in each quarter
    [0, 1, 2, 3]
    >>> picked == spread_indices(100, 4, 0, "c") != spread_indices(100, 4, 1, "c")
    True
    """
    if limit is None or limit >= total:
        return list(range(total))
    if first:
        return list(range(limit))
    rng = random.Random(f"{seed}:{key}")
    # Stratum i is [i * total // limit, (i + 1) * total // limit): never empty, since limit < total.
    return [rng.randrange(i * total // limit, (i + 1) * total // limit) for i in range(limit)]
