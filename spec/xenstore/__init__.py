"""XenStore: the configuration and status tree that dom0's xenstored serves.

Room: control plane. The daemon's semantics, one implementation used by both
engines and by ``hvmspec xenstored`` (``DESIGN.md``): the tree, permissions,
transactions, watches, quotas, domain introduction and release, and the
wire protocol of ``xen/include/public/io/xs_wire.h``. The guest never uses
XenStore (it knows nothing of Xen); xend writes a domain's configuration
here and qemu-dm reads it, ``xm list`` reads the domains back.

One module per concept:

* :mod:`spec.xenstore.paths`: node names, relative paths, the special
  ``@`` nodes, length limits;
* :mod:`spec.xenstore.perms`: access control lists, the rule that decides a
  connection's access to a node, inheritance on create (over :mod:`spec.bv`,
  so that :mod:`proofs.xenstore` checks the same functions);
* :mod:`spec.xenstore.transaction`: snapshot transactions and the commit
  check (generation counts);
* :mod:`spec.xenstore.watch`: watches, which changes fire them, who may see
  an event;
* :mod:`spec.xenstore.quota`: per-domain limits;
* :mod:`spec.xenstore.store`: the store and its connections, every operation;
* :mod:`spec.xenstore.wire`: ``xs_wire.h`` messages to operations and back.

Imports :mod:`spec.bv` and :mod:`spec.trace`.
"""

from spec.xenstore.errors import XenstoreError
from spec.xenstore.store import Connection, Store

__all__ = ["Connection", "Store", "XenstoreError"]
