"""The provisioning product: requests, token inventory, software tokens, people.

The engine core knows nothing of tokens; this package plugs into it with
models (on :class:`engine.models.Base`), service task handlers and event
listeners, registered when :mod:`engine.product` imports it.
"""
