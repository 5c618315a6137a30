"""``python -m infernet_ref`` runs the ``infernet`` command."""

import sys

from infernet_ref.cli import main

sys.exit(main())
