"""`python -m tests.scaleout.serve_backend PORT`: a second production worker on an existing build.

What `reflex run --env prod --single-port` runs after building: the production server (gunicorn
with chat_app's uvicorn worker, chosen by rxconfig.py) serving the app and the compiled frontend
from .web/build. Starting it directly lets a second worker share the first
worker's build instead of rebuilding the same folder concurrently.
"""

from __future__ import annotations

import sys

from reflex_base import constants
from reflex_base.config import get_config
from reflex_base.environment import environment


def main() -> None:
    port = int(sys.argv[1])
    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_SKIP_COMPILE.set(True)
    # rxconfig.py chooses the server through the environment; `reflex run` loads it first, and
    # run_backend_prod reads the choice before it would.
    get_config()
    from reflex.utils.exec import run_backend_prod

    run_backend_prod("127.0.0.1", port, constants.LogLevel.INFO, mount_frontend_compiled_app=True)


if __name__ == "__main__":
    main()
