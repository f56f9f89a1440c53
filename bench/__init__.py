"""The benchmark of DESIGN.md: `make bench` (python -m bench)."""
