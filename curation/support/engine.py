"""Where steps run: a local Ray instance by default, or a cluster at ``ray_address``."""

from __future__ import annotations

import atexit
import logging
import os

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = None) -> None:
    """Start (or connect to) Ray once per process.

    Parameters
    ----------
    address : str, optional
        ``None`` starts a local instance; ``"auto"`` or ``"ray://host:10001"`` joins a
        cluster (the same as ``ray_address`` in a loop file or ``RAY_ADDRESS``).
    """
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        return
    # "local": a new instance even when another Ray runs on this machine (ray.init(None)
    # would join the one it last started, and share its workers and their code)
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Actors that Ray Data stops at the end of a job get SIGTERM; without this, each one
    # prints a stack dump to the terminal. Crashes are still in Ray's log files.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    # Ray enables token auth on a local instance by default and says so on every start.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    log.info("starting Ray (%s)", address)
    ray.init(
        address=address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    for name in ("ray", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray Data warns once that its own bars are off: ours (per block) replace them.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    atexit.register(ray.shutdown)  # actors stop before the interpreter, with no "worker died" line
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
