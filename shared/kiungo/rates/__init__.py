"""Exchange rates (DESIGN §6): the rates-service client and exact conversion.

The package's names are :mod:`kiungo.rates.client`'s (its ``__all__``), re-exported here.
"""

from kiungo.rates.client import *  # noqa: F403
from kiungo.rates.client import __all__ as __all__
