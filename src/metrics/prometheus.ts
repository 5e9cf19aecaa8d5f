// tcpserver --metrics: the families of catalog.ts bound to a prom-client registry, with a few
// of its process metrics, and the text a scrape gets. Loaded only with the option: without it
// prom-client is never required and every inc() of a stage is a no-op.
import { cpuUsage } from "node:process";
import type * as Prom from "prom-client";
import "./catalog.ts";
import { FAMILIES } from "./family.ts";
import type { Family } from "./family.ts";

/** One process's metrics as prom-client's getMetricsAsJSON() gives them (--workers send theirs
 * to the first process over their IPC channel). */
export type Snapshot = Awaited<ReturnType<Prom.Registry["getMetricsAsJSON"]>>;

export interface Metrics {
  readonly contentType: string;
  /** This process's metrics, for the first process to add up. */
  snapshot(): Promise<Snapshot>;
  /** The text of a scrape: this process's metrics plus the other processes' snapshots. */
  render(others: readonly Snapshot[]): Promise<string>;
}

export async function enableMetrics(): Promise<Metrics> {
  const [registryModule, counterModule, gaugeModule, clusterModule, ...processModules] =
    await Promise.all([
      import("prom-client/lib/registry.js"),
      import("prom-client/lib/counter.js"),
      import("prom-client/lib/gauge.js"),
      import("prom-client/lib/cluster.js"),
      // Its process metrics, one import() per file as a bundler needs them. Left out: the GC
      // histogram (a callback per collection, on the handshake path), the walks of every
      // handle and request at each scrape (thousands here), the heap's per-space detail, and
      // its CPU counters, which bring OpenTelemetry's API along (ours are below).
      import("prom-client/lib/metrics/processStartTime.js"),
      import("prom-client/lib/metrics/osMemoryHeap.js"),
      import("prom-client/lib/metrics/processOpenFileDescriptors.js"),
      import("prom-client/lib/metrics/processMaxFileDescriptors.js"),
      import("prom-client/lib/metrics/eventLoopLag.js"),
      import("prom-client/lib/metrics/heapSizeAndUsed.js"),
      import("prom-client/lib/metrics/version.js"),
    ]);
  const RegistryClass = registryModule.default;
  const Counter = counterModule.default;
  const Gauge = gaugeModule.default;
  const registry = new RegistryClass();
  for (const f of FAMILIES) bind(f, registry, Counter, Gauge);
  for (const add of processModules) add.default(registry, { eventLoopMonitoringPrecision: 10 });
  addCpuCounters(registry, Counter);
  return {
    contentType: registry.contentType,
    snapshot: () => registry.getMetricsAsJSON(),
    async render(others) {
      if (others.length === 0) return registry.metrics();
      const own = await registry.getMetricsAsJSON();
      return clusterModule.default.aggregate([own, ...others]).metrics();
    },
  };
}

type CounterClass = typeof Prom.Counter;
type GaugeClass = typeof Prom.Gauge;

/** prom-client's names for the CPU time this process has used (its children's not included). */
function addCpuCounters(registry: Prom.Registry, Counter: CounterClass): void {
  const kinds = [
    ["process_cpu_user_seconds_total", "user", "Total user CPU time spent in seconds."],
    ["process_cpu_system_seconds_total", "system", "Total system CPU time spent in seconds."],
    ["process_cpu_seconds_total", "both", "Total user and system CPU time spent in seconds."],
  ] as const;
  for (const [name, kind, help] of kinds)
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const { user, system } = cpuUsage();
        this.reset();
        this.inc((kind === "user" ? user : kind === "system" ? system : user + system) / 1e6);
      },
    });
}

/** A counted family gets a counter that its inc() feeds; an observed one is read (and its old
 * series dropped) at each scrape. */
function bind(f: Family, registry: Prom.Registry, Counter: CounterClass, Gauge: GaugeClass): void {
  const { name, help, type, labels = [], aggregate = "sum", observed } = f.spec;
  const common = { name, help, labelNames: [...labels], registers: [registry] };
  if (type === "counter" && !observed) {
    const counter = new Counter({ ...common, aggregator: aggregate });
    f.sink = (values, by) => counter.inc(values, by);
    return;
  }
  if (type === "counter") {
    new Counter({
      ...common,
      aggregator: aggregate,
      collect() {
        this.reset();
        for (const sample of f.read()) this.inc(sample.labels, sample.value);
      },
    });
    return;
  }
  if (!observed) {
    const gauge = new Gauge({ ...common, aggregator: aggregate });
    f.sink = (values, by) => gauge.inc(values, by);
    return;
  }
  new Gauge({
    ...common,
    aggregator: aggregate,
    collect() {
      this.reset();
      for (const sample of f.read()) this.set(sample.labels, sample.value);
    },
  });
}
