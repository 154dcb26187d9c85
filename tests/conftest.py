"""Shared pytest settings. Hypothesis runs derandomized so CI failures reproduce."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "vlm-teacher",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("vlm-teacher")
