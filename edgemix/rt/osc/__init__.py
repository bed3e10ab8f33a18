"""OSC control in the Behringer X-Air dialect: :mod:`~edgemix.rt.osc.xair` (addresses and
value encodings) and :mod:`~edgemix.rt.osc.server` (the UDP server on the surface loop).
What the dialect does not cover here: ``docs/osc.md``."""
