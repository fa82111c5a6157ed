"""
A daemon's L{Runtime} for tests that build one listener on a reactor (the
fake one, or the real one in integration tests).
"""

from __future__ import annotations

from typing import Any

from twinetd.listeners.base import Runtime
from twinetd.listeners.datagram import DatagramListener, DatagramServing
from twinetd.listeners.waitdatagram import WaitDatagramListener
from twinetd.model import ServiceConfig
from twinetd.policy.access import DenyList
from twinetd.policy.gate import Gate, admitEveryone
from twinetd.policy.limits import Limits
from twinetd.spawn import spawnerFor


def runtimeFor(reactor: Any, **fields: Any) -> Runtime:
    """
    A runtime on C{reactor}: its spawner, a gate with its own limits,
    no environment, the daemon's uid 1000; C{fields} override.
    """
    limits = Limits(reactor)
    values: dict[str, Any] = {
        "spawner": spawnerFor(reactor),
        "clock": reactor,
        "tcp": reactor,
        "gate": Gate(reactor, limits, DenyList(reactor), minutes=lambda _: 600),
        "environment": {},
        "uid": 1000,
    }
    values.update(fields)
    return Runtime(**values)


def datagramListener(
    config: ServiceConfig,
    reactor: Any,
    *,
    handOff: bool = False,
    killDelay: float = 5.0,
    spawner: Any = None,
    **kw: Any,
) -> DatagramServing:
    """
    The listener the daemon builds for the datagram service C{config}
    (C{handOff}: drop-in mode) on C{reactor}, admitting everyone unless
    C{kw} gives an C{admit}; C{kw} as the listener's; C{spawner}: the
    runtime's, if not the reactor's own.
    """
    fields: dict[str, Any] = {} if spawner is None else {"spawner": spawner}
    runtime = runtimeFor(reactor, killDelay=killDelay, **fields)
    kw.setdefault("admit", admitEveryone)
    if config.wait or handOff:
        kw.pop("bindPort", None)
        return WaitDatagramListener(config, runtime, reactor, **kw)
    kw.pop("makeSocket", None)
    return DatagramListener(config, runtime, reactor, **kw)
