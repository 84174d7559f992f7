"""The one exception type des raises for bad input.

Every user mistake - a missing file, an unknown preset, a wrong field, a negative
bandwidth, a disconnected topology, a model that does not fit - is raised as a
:class:`DesError` whose message names what is wrong and where. The command line turns
it into one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations


class DesError(Exception):
    """Bad input or an impossible request, with a message meant for the user."""


class DoesNotFitError(DesError):
    """A model, with its KV cache and activations, needs more memory than a device has.

    A :class:`DesError` like any other; its own type lets a study report such a point as
    "does not fit" and go on, while other errors still stop it.
    """
