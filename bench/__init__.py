"""Benchmarks of nebo-integrations beside its anchors (issue 8): ``python -m bench.run`` in bench/.venv."""
