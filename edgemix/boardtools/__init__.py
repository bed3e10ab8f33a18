"""Deploying to a board: target profiles and the rest of the board data (``data/``:
profiles and systemd/installer templates, shipped as package data), the install bundle,
the preflight check, the warm-up run by the systemd unit, and the ARM (qemu) parity check.
The click commands are in :mod:`edgemix.cli.board`; the latency profiler is
:mod:`edgemix.latency_profile`."""
