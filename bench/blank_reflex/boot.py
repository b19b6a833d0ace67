"""Print, as JSON, what the blank app's compiled frontend would send when a page connects.

    cd bench/blank_reflex && python boot.py

`bench.events` serves the blank app with `--backend-only` (no frontend build, no browser), so
it forms the CONNECT packet itself. The values the compiled page would carry come from the
same Reflex functions the compiler uses for `.web/app/context.js` (`_compile_contexts`):
`initialStateHashes` (`state_snapshot_hashes` of the compiled initial state), `stateSchema`
(`State._to_frontend_schema()`), the root state's name (`initialEvents` names its
`hydrate_and_load`) and the client storage map (`hydrateClientStorage` sends each stored
value under its full var name). Run in its own process because importing an app registers its
states for the whole process.
"""

import json
import sys

from reflex.compiler import utils
from reflex.state import state_snapshot_hashes
from reflex.utils import prerequisites


def main() -> None:
    app, module = prerequisites.get_and_validate_app()
    state = app._state
    if state is None:
        sys.exit("the blank app has no state")
    initial_state, _ = utils._compile_initial_state(state)
    session, chat = module.SessionState, module.ChatState
    json.dump({
        "state_name": state.get_name(),
        "hashes": state_snapshot_hashes(initial_state),
        "state_schema": state._to_frontend_schema(),
        "client_storage": utils.compile_client_storage(state),
        "session_state": session.get_full_name(),
        "chat_state": chat.get_full_name(),
    }, sys.stdout)


if __name__ == "__main__":
    main()
