"""The console's pages, one blueprint per area, registered by :mod:`web.views`."""
