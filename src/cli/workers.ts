// `--workers auto` (tcpserver, tls-everywhere): one process per CPU this one may run on, as a
// daemon of the host takes by default (haproxy's threads, nginx's `worker_processes auto`).
import { availableParallelism } from "node:os";

/** The word that stands for it. */
export const AUTO_WORKERS = "auto";

/** The number `--workers auto` stands for, at most `most` (-c: each worker needs a connection
 * of its own). */
export function autoWorkers(most: number): number {
  return Math.max(1, Math.min(availableParallelism(), most));
}
