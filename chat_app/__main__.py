"""`python -m chat_app`."""

import sys

from chat_app.cli import main

sys.exit(main())
