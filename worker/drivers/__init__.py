"""Drivers: ``sim`` (the simulated network) and ``neonize`` (real WhatsApp)."""

from __future__ import annotations

from worker.config import WorkerConfig, WorkerConfigError
from worker.drivers.base import Driver


def make_driver(config: WorkerConfig) -> Driver:
    if config.driver == "sim":
        from worker.drivers.sim import SimDriver

        return SimDriver(
            config.session_id,
            config.session_dir,
            config.proxy_url,
            config.simwa_url,
            config.phone,
        )
    if config.driver == "neonize":
        try:
            from worker.drivers.neonize_driver import NeonizeDriver
        except ImportError as exc:
            raise WorkerConfigError(
                f"WA_DRIVER=neonize needs the neonize extra (wafleet[neonize]): {exc}"
            ) from None
        return NeonizeDriver(config.session_id, config.session_dir, config.proxy_url, config.phone)
    raise WorkerConfigError(
        f"WA_DRIVER={config.driver!r} is not available in this build (available: sim, neonize)"
    )
