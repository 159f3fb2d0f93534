"""``codat-commerce``: trigger, inspect and wait for Codat commerce syncs from a shell.

``codat-commerce demo`` runs the whole SDK against a local fake Codat (no account);
``codat-commerce sync ...`` talks to Codat (``CODAT_API_KEY`` or ``--api-key``);
``codat-commerce fake-server`` serves the fake on a loopback port. The command needs
the ``cli`` extra: ``pip install 'codat-commerce-async[cli]'``.
"""

from ._main import main

__all__ = ["main"]
