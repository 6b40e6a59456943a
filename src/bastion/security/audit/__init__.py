"""The audit log: append-only, hash-chained, with signed Merkle checkpoints.

What is stored (tables ``audit_log``, ``audit_head``, ``audit_checkpoints``)::

    entry i   = (seq, ts, actor, action, resource, outcome, details)   seq = 1, 2, 3, ... no gaps
    lh_i      = SHA-256(0x00 || leaf_i)                                 RFC 6962 leaf hash
    chain_i   = SHA-256(chain_{i-1} || lh_i),  chain_0 = 32 zero bytes   stored in every row
    head      = (last seq, last chain)                                  one row, id = 1
    checkpoint= (tree_size, MTH(lh_1..lh_n), ts, key_id, Ed25519 signature, frontier)

One module per job, each with its part of the story in its docstring:

- :mod:`.entry`: the entry format: ``leaf_i``'s bytes, the one leaf-hash and chain encoding,
  and the validation of an entry before it is queued.
- :mod:`.checkpoint`: the signed tree head and the exported checkpoint file.
- :mod:`.storage`: the SQL per dialect and the plain reads of entries, head and checkpoints.
- :mod:`.chain`: the one chaining code path (lock the head, chain, fold, sign, write) and
  the writer's anchor checks. :mod:`.writer`: :class:`AuditLog`, the group-commit writer
  thread and ``record_in``; :mod:`.waiters`: what callers wait on.
- :mod:`.verifier` and :mod:`.walk`: :meth:`AuditLog.verify` and its check order.
- :mod:`.adopt`: the one-time anchor of a home made before anchors.

``docs/formats/checkpoint.md`` specifies the bytes, with test vectors.
"""

from bastion.security.audit.adopt import adopt_anchor
from bastion.security.audit.checkpoint import CHECKPOINT_FORMAT, Checkpoint, read_checkpoint
from bastion.security.audit.entry import OUTCOMES, AuditEntry
from bastion.security.audit.verifier import VerifyReport
from bastion.security.audit.walk import AuditProblem
from bastion.security.audit.writer import AuditLog

__all__ = [
    "CHECKPOINT_FORMAT",
    "OUTCOMES",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "Checkpoint",
    "VerifyReport",
    "adopt_anchor",
    "read_checkpoint",
]
