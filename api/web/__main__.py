"""``python -m api.web``: the Procfile's web process (``server.py``)."""

import sys

from .server import main

sys.exit(main())
