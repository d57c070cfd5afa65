"""Import the modules that register the product's service handlers and listeners.

The engine core knows nothing of tokens or e-mail; the provisioning and
notification packages plug into it by registering service topics, event
listeners and worker jobs when they are imported. Entry points (CLI, web app,
worker, tests) import this module once.
"""

from . import (
    api_tokens,  # noqa: F401 - personal API tokens (table api_token)
    notifications,  # noqa: F401 - e-mail outbox, listener, worker job
)
from .provisioning import (  # noqa: F401 - service handlers, models, listeners
    handlers,
    inventory_models,
    request_models,
    requests,
)
