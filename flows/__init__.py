"""Flows compose the tasks; `flows.cli` is the `voicebatch` command."""
import os

# Offline by default: no analytics calls that would log errors, and room for a cold temporary server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# The temporary server this process starts records task runs and events one at a time by default: ~35 ms of
# its CPU per task run, on the cores the render lanes need (a 200-line run spent 3.4 s there). Batched, it
# records the same runs and events for ~6 ms each, at most their flush interval (5 s) later. A server started
# apart (`prefect server start`) reads its own settings; the README recommends the same ones.
for _name in ("TASK_RUN_RECORDER_BATCH_SIZE", "TASK_RUN_RECORDER_READ_BATCH_SIZE", "EVENT_PERSISTER_READ_BATCH_SIZE",
              "TRIGGERS_READ_BATCH_SIZE"):
    os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{_name}", "100")
os.environ.setdefault("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE", "500")
