"""What the host injects into a decision: the time.

Owns the ``Context`` passed to every ``decide``/``handle``. Identifiers are not
drawn from here: bet ids come from the market's own counter (replayed from its
events) and every other id is the command's id, so a decision is a function of
(state, command, context) alone.

Must never read a clock itself.
"""

from __future__ import annotations

from typing import NamedTuple


class Context(NamedTuple):
    now_ms: int
