"""The `detseg` command line (entry point detseg.cli.main:main): `detseg bench`, and later
parity / eval commands. The benchmark workloads and providers here are importable by
benchmarks/ (pytest-benchmark) so that both measure the same thing."""
