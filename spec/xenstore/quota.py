"""XenStore quotas: what one unprivileged domain may use.

Room: the limits and the one check. Imports :mod:`spec.bv`.

xenstored limits each unprivileged domain (``quotas[]`` in
``tools/xenstored/domain.c``; dom0 and socket connections have none). A
request that would pass a limit is refused with ``ENOSPC`` and changes
nothing:

=================  =======  =====================================================
quota              default  counts
=================  =======  =====================================================
``nodes``          1000     nodes the domain owns (a node is charged to its owner)
``node-size``      2048     bytes of one node's value
``watches``        128      watches of one connection
``transactions``   10       open transactions of one connection
``permissions``    5        entries of one node's permission list
=================  =======  =====================================================

A limit here is what a domain may have: 1000 nodes, not 999. (Current
xenstored's ``domain_quota_val_exceeds`` refuses when the count would
*reach* the quota, ``val >= quota``, one fewer than its documentation's
"number of nodes a domain may own"; it also counts a node's whole record
against ``node-size``, where this model counts the value.)
"""

from __future__ import annotations

from dataclasses import dataclass

from spec import bv


@dataclass(frozen=True)
class Quotas:
    nodes: int = 1000
    node_size: int = 2048
    watches: int = 128
    transactions: int = 10
    permissions: int = 5


def within(privileged: bv.Bit, used: bv.Word, adding: bv.Word, limit: bv.Word,
           width: int = 32) -> bv.Bit:
    """Adding ``adding`` to ``used`` keeps an unprivileged domain within
    ``limit`` (``domain_quota_add_exceeds``)."""
    return bv.or_(privileged, bv.not_(bv.ult(limit, bv.add(used, adding, width))))
