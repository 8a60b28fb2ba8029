"""Flows compose the tasks; `flows.cli` is the `voicebatch` command."""
import os

# Offline by default: no analytics calls that would log errors, and room for a cold temporary server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# The environment as the command got it (with the defaults above): a warm process is started with it and
# matched against it (flows/warm.py), whatever later imports add.
ENVIRONMENT_AT_START = dict(os.environ)
