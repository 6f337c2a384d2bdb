"""``recsys serve``: an HTTP service and a browser page over an index, its encoder and a ranker.

:func:`create_app` builds the FastAPI application; :class:`Service` is the HTTP-free core.
"""

from recsys.serve.app import create_app
from recsys.serve.service import Limits, Service

__all__ = ["create_app", "Service", "Limits"]
