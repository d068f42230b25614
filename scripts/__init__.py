"""The repository's scripts; a package so that `python -m scripts.bench` and the scripts beside it can import the
benchmarks' package from the repository root."""
