"""``python -m opencmap``: the ``opencmap`` command (:func:`opencmap.cli.main`), for environments
where the console script is not on ``PATH``."""

from opencmap.cli import main

if __name__ == "__main__":
    main()
