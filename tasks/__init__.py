"""Pipeline steps as plain, testable functions, in one subpackage per stage; Prefect wraps them in flows/.
Imports run one way: core <- engine <- audio, script, store <- voices, render, output, qa, sweep, review,
book_import <- flows (tests/test_layout.py keeps the rule)."""
