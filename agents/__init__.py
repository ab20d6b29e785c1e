"""Faust agents: thin loops that batch records and call the pure core in ``stream_app``."""
