"""``python -m e2etests``: the same as the ``e2etests`` console script."""

from e2etests.cli import main

raise SystemExit(main())
