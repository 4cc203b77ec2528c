"""A local stand-in for Meta: the Graph API the app sends through, and the webhooks Meta fires.

The simulator is a real HTTP server so the app, its workers and the tests talk to it exactly as
they talk to Meta: `server` is the Send API and profile lookups (with error injection, slow
answers, closed reply windows and echoes), `webhooks` builds and signs the customer-side events,
`testing` runs it in a background thread, `cli` is `python -m devtools.graphsim` and
`flask --app wsgi graph-sim`.
"""

from devtools.graphsim.server import SimState, create_simulator, serve, start_in_thread
from devtools.graphsim.webhooks import (
    send_dm,
    send_echo,
    send_edit,
    send_reaction,
    send_read,
    send_unreact,
    send_unsend,
    sign,
)

__all__ = [
    "SimState",
    "create_simulator",
    "send_dm",
    "send_echo",
    "send_edit",
    "send_reaction",
    "send_read",
    "send_unreact",
    "send_unsend",
    "serve",
    "sign",
    "start_in_thread",
]
