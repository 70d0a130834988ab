"""Random revisions of a repo, for the property tests of what builds keep for the next one."""

from __future__ import annotations

import random
from collections.abc import Sequence

Edit = tuple[str, str]  # replace this text with that


def random_revision(
    rng: random.Random,
    files: dict[str, bytes],
    history: list[dict[str, bytes]],
    edits: Sequence[Edit],
    copy_share: float = 0.1,
    once_share: float = 0.7,
) -> dict[str, bytes]:
    """One of: a revert to one of the last three revisions (the cache still holds most of it), a deleted file,
    a copied file (the same resources twice: duplicate-resource errors), or one of `edits` applied to a file,
    at its first place or everywhere (`once_share` of the time at the first)."""
    files = dict(files)
    action = rng.random()
    path = rng.choice(sorted(files))
    if action < 0.1 and len(history) > 2:
        return dict(rng.choice(history[-3:]))
    if action < 0.2:
        del files[path]
    elif action < 0.2 + copy_share:
        files["copies/" + path] = files[path]
    else:
        text = files[path].decode()
        old, new = rng.choice([edit for edit in edits if edit[0] in text] or [("\n", "\n")])
        files[path] = text.replace(old, new, 1 if rng.random() < once_share else -1).encode()
    return files
