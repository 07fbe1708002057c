"""One router per resource under ``/v1``: projects, certificates, devices,
LightDB State and the audit log."""
