// The connections being served, so that after SIGTERM's bound the ones left can be ended: all
// of them with --drain, the ones served in this process without it. A program spawned on the
// socket gets SIGTERM (and SIGKILL 2 s later: chain.ts); an in-process chain gets the same stop
// for the programs it spawned, and loses its client connection, so that a stage waiting on it
// (a relay, a handshake) ends too.
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";
import { Stopper } from "../ucspi/stop-signal.ts";

export interface Served {
  /** Given to runChain as its stop: stopping it ends whatever the chain spawned. */
  readonly stop: Stopper;
  /** The connection as runChain got it (a stage that makes a stream of it puts it here). */
  readonly connection: Connection;
  /** The program runs on the socket itself: this process holds no copy of it any more. */
  spawned: boolean;
}

export class Running {
  private readonly served = new Set<Served>();
  /** endAll() was called: a connection that starts now is not served. */
  ended = false;

  add(connection: Connection): Served {
    const served: Served = { stop: new Stopper(), connection, spawned: false };
    this.served.add(served);
    return served;
  }

  /** The chain is over: from here on the server closes the connection's fd. */
  remove(served: Served): void {
    this.served.delete(served);
  }

  endAll(): void {
    this.ended = true;
    for (const served of this.served) end(served);
  }

  /** Ends the connections served in this process; a program on its own socket goes on (djb). */
  endInProcess(): void {
    this.ended = true;
    for (const served of this.served) if (!served.spawned) end(served);
  }
}

function end(served: Served): void {
  served.stop.stop();
  if (served.spawned) return;
  const { stream, fd } = served.connection;
  if (stream) {
    // An end of input first, as if the client had closed: a reader that ends only on "end"
    // (readline) ends too; then the socket goes, whatever the stage still writes.
    if (!stream.destroyed) stream.push(null);
    setImmediate(() => stream.destroy());
  }
  // No stream yet (a stage peeking at the socket, or splicing it): the client gets our FIN,
  // and its close ends the stage. The fd stays open until the chain is over (remove()).
  else if (fd !== undefined) native().shutdownWrite(fd);
}
