import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { createServer, type Socket } from 'node:net';
import { BerthError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { AuthorityFixingStream } from './h2-authority.js';

export interface GrpcUnixListener {
  /**
   * Stops accepting connections and closes the accepted ones gracefully:
   * clients get GOAWAY, calls in flight run to their end. Connections still
   * open after `graceMs` are cut, cancelling their calls. Settles when every
   * connection has ended.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Serves `server` on the UNIX socket `path`. We listen ourselves instead of
 * `server.bindAsync('unix://...')` so that every connection goes through
 * AuthorityFixingStream before grpc-js sees it: old grpc-go clients send the
 * socket path as `:authority`, which Node's HTTP/2 layer would refuse.
 *
 * Shut down with close(graceMs), not with the server's tryShutdown() alone:
 * for injected connections tryShutdown() does not wait. It closes the
 * injector's HTTP/2 server, whose close() (Node 24) closes all its sessions
 * before grpc-js asks each to close and wait; grpc-js then finds them
 * closed and reports them done at once, and the server itself has no
 * listening handle or connection count that would hold its close back.
 */
export function listenGrpcUnix(server: Server, path: string, log: Logger): Promise<GrpcUnixListener> {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const sockets = new Set<Socket>();
  const listener = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const stream = new AuthorityFixingStream(socket);
    stream.once('close', () => {
      if (stream.rewritten > 0) {
        log.debug({ rewritten: stream.rewritten }, 'connection sent :authority values that are not RFC 3986 authorities (a socket path?); they were rewritten');
      }
    });
    injector.injectConnection(stream);
  });

  let closing: Promise<void> | undefined;
  const close = (graceMs: number) =>
    (closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ graceMs, connections: sockets.size }, 'in-flight calls did not finish in time; cancelling them');
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      // The callback runs once every accepted connection has ended.
      listener.close(() => {
        clearTimeout(timer);
        injector.destroy();
        resolve();
      });
      // GOAWAY to every client now; a session ends when its last call does. At graceMs the
      // injector destroys the sessions left; the timer above cuts their sockets too and says so.
      injector.drain(graceMs);
    }));

  return new Promise((resolve, reject) => {
    listener.once('error', (err) => {
      injector.destroy();
      reject(new BerthError('unavailable', 'ERR_SOCKET_BIND', `cannot listen on ${path}: ${err.message}`, { context: { path }, cause: err }));
    });
    listener.once('listening', () => {
      listener.removeAllListeners('error');
      listener.on('error', (err) => log.warn({ err: errorMessage(err), path }, 'cannot accept a connection'));
      resolve({ close });
    });
    // The socket is born 0660: no window in which others may connect. listen() creates it before returning.
    const previous = process.umask(0o117);
    try {
      listener.listen(path);
    } finally {
      process.umask(previous);
    }
  });
}
