"""A stream client's copy of one runner, kept the way Betfair's stream clients keep it.

`atb`/`atl`/`trd` hold price -> size (size 0 removes the price); `batb`/`batl` hold
level -> (price, size) (size 0 empties the level); `ltp` and `tv` are replaced.
Shared by the unit tests of the rendering and the end-to-end stream tests.
"""

from __future__ import annotations


def new_runner() -> dict:
    return {"atb": {}, "atl": {}, "trd": {}, "batb": {}, "batl": {}, "ltp": None, "tv": 0}


def apply_runner(r: dict, rc: dict) -> None:
    """Applies one `rc` entry of an mcm to the runner's copy `r`."""
    for key in ("atb", "atl", "trd"):
        for price, size in rc.get(key, []):
            if size:
                r[key][price] = size
            else:
                r[key].pop(price, None)
    for key in ("batb", "batl"):
        for level, price, size in rc.get(key, []):
            if size:
                r[key][level] = (price, size)
            else:
                r[key].pop(level, None)
    for key in ("ltp", "tv"):
        if key in rc:
            r[key] = rc[key]
