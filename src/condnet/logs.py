"""Where library code reports progress unless told otherwise: the "condnet" logger at INFO, silent until
the application configures logging. The command line passes `print` instead (`log=print`)."""

from __future__ import annotations

import logging

info = logging.getLogger("condnet").info
