"""振风超市 benchmarks, run from the repository root with `uv run python -m scripts.bench [--quick] [names]` (the usage is
in __main__.py, and `--help` prints it). Results go to docs/benchmarks.md.

    common      the result row, the run's options and notes, a fresh database, percentiles, settling, clocks
    county      fixtures that fill a county: villages, households, stores, committees, rounds, a year of closes
    server      `zhenfeng serve` in a subprocess on a free port (also used by scripts/rush.py and the tests), pgbench
    roster, search, ledger, evaluation, store, dashboard, notices    one module per benchmark (or group of them)
    report      the machine, the tables, each section's method, the writer of docs/benchmarks.md
    __main__    the command line

Importing this package runs nothing and imports no benchmark.
"""
