"""``python -m edgemix ...`` is the ``edgemix`` command itself (:func:`edgemix.cli.main`)."""
from edgemix.cli import main

main()
