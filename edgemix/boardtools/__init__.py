"""Deploying to a board: target profiles, the install bundle, the preflight check, the
warm-up run by the systemd unit, and the ARM (qemu) parity check.  The click commands are
in :mod:`edgemix.board_commands`; the latency profiler is :mod:`edgemix.profile`."""
