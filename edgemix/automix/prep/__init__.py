"""Mix preparation: what to fix in a set of stems or live channels before mixing.

Clicks and pops (:mod:`.clicks`), silences (:mod:`.silences`), mono compatibility
(:mod:`.mono`), labels, colours and groups (:mod:`.labels`) and the ``edgemix prep``
report that puts them together (:mod:`.report`); polarity and time alignment between
mics of one source is :mod:`.align`.
"""
