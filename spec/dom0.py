"""dom0's control plane on one host: xenstored and xend, and how Xen reaches them.

Room: the wiring of the two daemons that every host (both engines, and
``hvmspec xend``) runs in dom0: one :class:`spec.xenstore.Store` and one
:class:`spec.xend.Xend` with its XenStore connection, and the path of
``VIRQ_DOM_EXC``. One implementation, used by both engines (``DESIGN.md``).
Imports :mod:`spec.xenstore`, :mod:`spec.xend`, :mod:`spec.trace`.

When a domain shuts down (the guest's ACPI power-off or reset, a crash,
``xm shutdown``) or dies (``xm destroy``), Xen raises ``VIRQ_DOM_EXC`` in
dom0. xenstored handles it: it asks the hypervisor about each introduced
domain and fires ``@releaseDomain`` (``domain_cleanup`` in
``tools/xenstored/domain.c``). xend is not told directly: it watches
``@releaseDomain``, and on each event looks at its domains' shutdown
reasons and acts on ``on_poweroff``, ``on_reboot``, ``on_crash``.
:meth:`Dom0.poll` runs those two steps, in that order, once per
scheduling round.
"""

from __future__ import annotations

from typing import Callable

from spec import trace
from spec.xend import Host, Xend
from spec.xenstore import Connection, Store
from spec.xenstore.store import DomainState


class Dom0:
    """xenstored and xend for a host."""

    def __init__(self, host: Host, emit: Callable[[trace.Event], None],
                 store: Store | None = None) -> None:
        self.host = host
        self.store = store if store is not None else Store(emit)
        self.xend = Xend(host, emit, self.store.connect("xend"))

    def connect(self, name: str) -> Connection:
        """A dom0 process's XenStore connection (qemu-dm's)."""
        return self.store.connect(name)

    def poll(self) -> bool:
        """One round of dom0's daemons; True if either had work."""
        progressed = False
        if self.host.dom_exc_pending():
            self.store.domain_exception(self._state)
            progressed = True
        return self.xend.poll() or progressed

    def _state(self, domid: int) -> DomainState | None:
        info = self.host.domain_info(domid)
        return None if info is None else DomainState(info.shutdown, info.dying)
