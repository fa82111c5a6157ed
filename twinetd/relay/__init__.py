# -*- test-case-name: tests.unit.test_relay,tests.integration.test_bridge -*-
"""
Moving a client's bytes to and from a child's standard input and output
without Twisted's process pipes.

Twisted reads a child's pipe 8 KiB per C{read()}: a bridge built on it
tops out near a third of what the kernel moves.  Here the bridge makes the
child's standard input and output pipes itself (L{ChildPipes}) and relays
them in one of three ways (L{PipeRelay}):

  - C{splice}: the client is a plain socket (L{socketOf}): C{splice(2)}
    from the socket into the child's standard input and from its standard
    output into the socket; no byte passes through Python;
  - C{copy}: the same with C{read()}/C{write()} of up to 64 KiB (where
    C{splice} is missing, or forced off);
  - C{transport}: anything else (TLS, a PROXY header, a wrapping
    protocol): the client's bytes come from the protocol's C{dataReceived}
    and go out through C{transport.write}, with Twisted's producer flow
    control; the pipes are still read 64 KiB at a time.

Every way keeps the bridge's rules: the daemon holds at most one read (64
KiB) per direction beyond the kernel's buffers (the socket is not read
while the child's standard input is full, the child's output is not read
while the client does not take it); the client's end of file closes the
child's standard input once its bytes are written; the child closing its
standard output ends the relay once its bytes are sent; a child that closes
its standard input has the client's further bytes counted and dropped (the
socket is still read, so that the client's departure is noticed).

The descriptors of every relay of a reactor are watched by one epoll
descriptor (L{RelayLoop}), read by the reactor like any socket: a ready
descriptor costs one dispatch, not one of Twisted's per-descriptor
dispatches with their logging context.  Level triggered: a descriptor is
registered only while its relay waits for it.

Modules: C{loop} (L{RelayLoop}), C{descriptors} (the client's socket,
L{socketOf}, and the child's pipes, L{ChildPipes}), C{pipe} (L{PipeRelay},
one class per direction).  The switches tests turn are where they are read:
C{descriptors.SOCKETS} and C{pipe.SPLICE}.
"""

from __future__ import annotations

from twinetd.relay.descriptors import ChildPipes, IByteTransparent, socketOf
from twinetd.relay.loop import RelayLoop, relayLoop
from twinetd.relay.pipe import PipeRelay, RelayEvents

__all__ = [
    "ChildPipes",
    "IByteTransparent",
    "PipeRelay",
    "RelayEvents",
    "RelayLoop",
    "relayLoop",
    "socketOf",
]
