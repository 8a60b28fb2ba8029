"""Pipeline steps as plain, testable functions; each module's thin @task wrappers live in tasks/prefect_tasks.py."""
