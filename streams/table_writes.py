"""Writing a Faust table as if during a given event.

Faust writes a table key's changelog to the partition of the event being processed. Code that
writes after a whole take (or for another partition of the take) names the event whose
partition the key belongs to.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event


@contextmanager
def during(event: Any) -> Iterator[None]:
    """Table writes in the block go to ``event``'s partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
