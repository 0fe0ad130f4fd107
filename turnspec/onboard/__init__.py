"""Onboarding: find a model's chat quirks by rendering probe conversations, report them, keep them in a profile.

    report = onboard_model("org/name")            # never raises for a broken model: report.error says why
    print(format_report(report))
    save_profile(report, "config/models")          # config/models/org--name.yaml; keeps notes and pins

At run time (`turnspec run` / `serve`), a saved profile's pinned overrides are applied to the spec:

    profile = load_profile(spec, "config/models")   # None when the model has no profile
    pins = apply_pins(spec, profile)                # extends spec.stops; pins.system_mode, pins.template_kwargs

Attributes are imported lazily so that importing the package costs nothing until it is used.
"""

from __future__ import annotations

from turnspec.lazy import lazy_getattr

_LAZY = {
    "Report": "turnspec.onboard.probe",
    "onboard_spec": "turnspec.onboard.probe",
    "onboard_model": "turnspec.onboard.probe",
    "DEFAULT_PROBE_TIME_LIMIT_S": "turnspec.onboard.probe",
    "DEFAULT_PROFILES_DIR": "turnspec.onboard.profile",
    "Pins": "turnspec.onboard.profile",
    "apply_pins": "turnspec.onboard.profile",
    "load_profile": "turnspec.onboard.profile",
    "profile_filename": "turnspec.onboard.profile",
    "profile_path": "turnspec.onboard.profile",
    "save_profile": "turnspec.onboard.profile",
    "format_report": "turnspec.onboard.report",
    "summary_row": "turnspec.onboard.report",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
