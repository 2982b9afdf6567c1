"""The Cranker connector: sockets to routers, replaying requests against a target.

Threads and ownership
=====================

Threads (every one named, created by ``Connector.start`` and joined by ``Connector.stop``):

* ``crank-connector-socket-N`` (a reused :class:`~crank_sync.threads.ThreadCache` thread):
  one per websocket to a router (a ``SocketWorker``). It registers, then is the only thread
  that reads that websocket, with one exception below. On a v1 socket it waits for the
  request, reads the request body, calls the target and writes the response frames itself
  (one request per socket; the link opens a replacement as the request arrives). On a v3
  socket it is the reader: it feeds each message to the socket's sans-IO session and hands
  the events to the streams, and it never waits for a target.
* ``crank-connector-stream-N`` (a ``ThreadPoolExecutor`` of ``v3_workers`` threads): one v3
  stream at a time, replayed against the target; it reads the target's response and writes
  the stream's frames to the websocket.
* ``crank-connector-watcher`` (``CancelWatcher``): while a v1 socket's thread is blocked on
  the target (between ``watch`` and ``unwatch``), this thread watches that websocket with a
  selector, to notice the router closing it (the client went away) and cancel the target
  request. It reads the socket only in that window, when its own thread does not. During a
  response on TLS it is not used: the socket's thread polls between chunks instead.

Errors: websocket-client's and the socket's errors become crank_sync errors where they arise,
in :mod:`.websocket` (a read, a write) and :mod:`.handshake` (the upgrade); urllib3's and a
target's in :mod:`.target`. The threads above catch crank_sync errors only.

Writes to a websocket go through websocket-client's send lock (``ws.lock``), so a v3 socket's
reader (WINDOW_UPDATEs, pongs) and its streams' pool threads never interleave frames; on TLS a
read also happens under that lock.

The target: each connection of the :class:`~crank_sync.connector.target.TargetClient` pool is
used by one thread at a time (checked out for a request, checked back in once its response
was read to the end, closed otherwise). ``Cancel.cancel()`` is the one call another thread
(the watcher, a v3 reader on RST_STREAM or the socket's end) makes on it: it shuts the
connection's socket down so that the blocked read or write fails at once.

Listeners (:mod:`.listening`, :mod:`.hooked`): a request's callbacks run on the thread
serving it (a v1 socket's, a v3 stream's); ``registration_headers`` on the socket's thread
before its upgrade; ``on_registration_changed`` on the socket thread that saw the change,
holding only its link's ``RegistrationNotices`` delivery lock, so calls for one router come in
order and never overlap.

Lock order: a ``RouterLink``'s lock (its worker list) is taken alone, but for its
``RegistrationNotices`` queue lock, innermost (a change is queued where it is decided). A v3
socket's session lock and a stream's condition are never held together: the reader takes the
session lock to turn a message into events, releases it, then notifies each stream.
websocket-client's send lock is innermost. A ``Cancel``'s lock guards only its connection
and flag, and is released before the socket is shut down.

Read without a lock, on purpose: a worker's ``state`` (a ``SocketState``, written by its own
thread; the link reads it under its own lock to count sockets, where a stale read only makes
one more or one fewer replacement wait for the next check), ``Cancel.cancelled`` and a v3
stream's ``cancelled`` (set once, never cleared; readers re-check after every blocking step).
"""
from .connector import Connector

__all__ = ["Connector"]
