"""The Cranker router: client listener, registration listener, connector socket pools.

Threads and ownership
=====================

Threads (every one named, and joined by ``Router.stop``):

* ``crank-router-client-listener`` and ``crank-router-registration-listener``: the accept
  loops (``serve_forever``); they never read a connection. The registration listener admits a
  connection only under the pending cap (``PendingLimit``) before handing it on.
* ``crank-router-client-N`` (a reused :class:`~crank_sync.threads.ThreadCache` thread): one
  per client connection. It alone reads the client socket (request heads and bodies), picks a
  connector socket from the pool, sends the request to the connector and, as a rule, writes
  the response to the client.
* ``crank-router-registration-N``: one per registration connection (admin requests too). After
  a websocket upgrade the same thread becomes that connector socket's reader (its log lines
  name it ``crank-router-ws-N``): the only thread that ever reads the connector socket, for as
  long as it lives. It answers pings and close frames, pings the socket while it is idle, and
  feeds v3 frames to the socket's session.
* ``crank-router-deadlines``: ends request heads that do not arrive within
  ``header_timeout`` (it shuts the socket down; it never reads or writes it).

Connector sockets: any thread may write, always through the socket's writers' lock and
``sendall`` (``LockedSocket``), so frames from two threads never interleave: the client
threads (v1 request, v3 HEADERS/DATA/RST_STREAM), the reader (pongs, close replies, v3
WINDOW_UPDATEs) and the ping on an idle socket. On TLS the reader also reads under that lock,
because an ``SSLSocket`` must not be read and written at once.

Client sockets: the client's own thread writes, except while it has lent the socket to a
connector socket's reader for the response body, through the exchange's ``ClientSink``:

* v1: ``hand_over(sink, flush)`` lets the reader (which serves this one client only) write
  body chunks with the sink's blocking ``write`` (bounded by the client timeout);
  ``detach()`` returns once the reader is out, and only then does the client thread write
  again. An error on the client is left in the sink's error slot for the client thread.
* v3: ``write_directly(writer)`` lets the reader (which serves every stream of its socket)
  try a non-blocking ``try_write``; what the client did not take is handed back as leftover
  and the client thread writes it; ``take_back()`` (or the next ``get``) ends the lending.
  The v3 reader never blocks on a client.

Lock order (take the earlier before the later, never the reverse): a v1 connector socket's
``_sink_lock`` first; under it the ``ClientSink`` lock (while a body chunk is written) or,
after that write failed, the socket's condition (``_cond``), never both. The writers' lock
of a connector socket is innermost: nothing else is taken while it is held.
A v3 session's stream-table lock and a v3 stream's condition are each held only to read or
change their own state and are released before a frame is sent; the socket registry's lock
is held only to move sockets between its sets, never around I/O.

Read without a lock, on purpose (one writer, and a stale read only delays a decision by one
check): ``RouterCore.draining`` (set once by ``stop``), a socket's ``in_use`` (written under
the registry lock, read by metrics and the admin pages), a sink's ``last_activity`` (written
by the reader, read by the client thread's idle check; whether a write is under way is the
sink's lock itself, ``ClientSink.busy``), ``close_received`` (set by the reader before it
ends), and a v3 stream's ``overflowed`` (set once by the reader under the stream's condition,
before the client thread can see the overflow: the reader alone then resets the stream).
"""
from .server import Router

__all__ = ["Router"]
