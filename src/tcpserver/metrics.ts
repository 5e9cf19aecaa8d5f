// tcpserver --metrics: the endpoint, served by the first process. With --workers each process
// counts its own connections; a scrape asks every worker for its counts over the IPC channel it
// has with the first process and adds them up, so that Prometheus sees one tcpserver.
import type { ChildProcess } from "node:child_process";
import type { MetricsAddress } from "../metrics/address.ts";
import type { Endpoint } from "../metrics/endpoint.ts";
import type { Metrics, Snapshot } from "../metrics/prometheus.ts";

/** What the first process sends a worker for its counts, and what the worker answers. */
export interface SnapshotRequest {
  metricsRequest: number;
}
export interface SnapshotReply {
  metricsReply: number;
  snapshot: Snapshot;
}

/** How long a worker has to answer. One that does not is counted as it last answered: a sum
 * that went down would look like a restart to Prometheus. */
const ANSWER_MS = 2_000;

export function isSnapshotRequest(message: unknown): message is SnapshotRequest {
  return typeof (message as SnapshotRequest | undefined)?.metricsRequest === "number";
}

function isSnapshotReply(message: unknown): message is SnapshotReply {
  return typeof (message as SnapshotReply | undefined)?.metricsReply === "number";
}

/** Binds the endpoint; `workers()` are the processes whose counts each scrape adds. */
export async function serveMetrics(
  address: MetricsAddress,
  metrics: Metrics,
  workers: () => readonly ChildProcess[],
): Promise<Endpoint> {
  const { listenForScrapes } = await import("../metrics/endpoint.ts");
  const snapshots = new WorkerSnapshots();
  return listenForScrapes(address, metrics.contentType, async () =>
    metrics.render(await snapshots.gather(workers())),
  );
}

class WorkerSnapshots {
  private readonly last = new Map<ChildProcess, Snapshot>();
  private readonly waiting = new Map<number, (snapshot?: Snapshot) => void>();
  private readonly listening = new WeakSet<ChildProcess>();
  private nextId = 0;

  gather(workers: readonly ChildProcess[]): Promise<Snapshot[]> {
    return Promise.all(workers.map((worker) => this.ask(worker))).then((answers) =>
      answers.filter((answer): answer is Snapshot => answer !== undefined),
    );
  }

  private ask(worker: ChildProcess): Promise<Snapshot | undefined> {
    if (!worker.connected) return Promise.resolve(this.last.get(worker));
    this.listen(worker);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const done = (snapshot?: Snapshot) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        if (snapshot) this.last.set(worker, snapshot);
        resolve(this.last.get(worker));
      };
      const timer = setTimeout(done, ANSWER_MS);
      this.waiting.set(id, done);
      const request: SnapshotRequest = { metricsRequest: id };
      worker.send(request, (error) => {
        if (error) done();
      });
    });
  }

  private listen(worker: ChildProcess): void {
    if (this.listening.has(worker)) return;
    this.listening.add(worker);
    worker.on("message", (message) => {
      if (!isSnapshotReply(message)) return;
      this.waiting.get(message.metricsReply)?.(message.snapshot);
    });
  }
}
