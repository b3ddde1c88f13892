"""Hypothesis profiles for the property tests.

``ci`` (the default): 200 examples, 50 stateful steps, no deadline (the machine
is shared), the failing example printed with its reproduction blob.
``dev``: a quick pass. ``thorough``: for a long run before a release.
Choose with HYPOTHESIS_PROFILE=dev|ci|thorough.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=30)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=2000, stateful_step_count=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
