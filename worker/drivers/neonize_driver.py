"""Where the neonize driver is imported from: ``make_driver`` and the worker image's build
check name this module. The driver itself lives in ``worker/drivers/neonize/``."""

from __future__ import annotations

from worker.drivers.neonize.driver import NeonizeDriver

__all__ = ["NeonizeDriver"]
