"""Compile everything a board runs before the stream opens (systemd ``ExecStartPre``).

    edgemix board warmup --profile /opt/edgemix/profile.toml \
                         [--session /opt/edgemix/session.toml]

Builds what ``edgemix run`` runs for the session (or, without one, the session a bundle
for the profile ships) through the composition root and warms it: every Numba kernel is
compiled into ``NUMBA_CACHE_DIR`` (or loaded from it), and the control path -- the control
process for a live backend -- loads the session's model with its ``model.backend`` and
compiles the features, so a broken model fails here, before the show, not on the first
control hop.  Exit status 0 when everything compiled and loaded, 1 with a one-line reason
otherwise.
"""
from __future__ import annotations



def warm(profile, session=None, models_dir=None) -> list[tuple[str, float]]:
    """Compile/load every kernel and the model; ``[(what, seconds), ...]``.

    ``session``: the board's session (its settings, backend and model); without one, the
    session a bundle for ``profile`` ships (:func:`edgemix.app.session_for_target`).  What
    is warmed is what ``edgemix run`` runs (:func:`edgemix.app.warm`), for any backend and
    any model runtime."""
    from edgemix import app
    if session is None:
        session, _ = app.session_for_target(profile, models_dir)
    return app.warm(session)
