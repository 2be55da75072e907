"""First-party dataset builders for hrm-data (installed as the package ``hrm_builders``)."""
