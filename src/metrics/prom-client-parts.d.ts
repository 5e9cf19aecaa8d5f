// prom-client's own modules, required one by one (its index also loads the push gateway's
// http, https and zlib and the summary's t-digest, +57 ms at start-up and a bigger bundle), typed
// from its index's declarations.
declare module "prom-client/lib/registry.js" {
  import type { Registry } from "prom-client";
  const RegistryClass: typeof Registry;
  export default RegistryClass;
}

declare module "prom-client/lib/counter.js" {
  import type { Counter } from "prom-client";
  const CounterClass: typeof Counter;
  export default CounterClass;
}

declare module "prom-client/lib/gauge.js" {
  import type { Gauge } from "prom-client";
  const GaugeClass: typeof Gauge;
  export default GaugeClass;
}

declare module "prom-client/lib/cluster.js" {
  import type { AggregatorRegistry } from "prom-client";
  const AggregatorRegistryClass: typeof AggregatorRegistry;
  export default AggregatorRegistryClass;
}

declare module "prom-client/lib/metrics/*" {
  import type { Registry } from "prom-client";
  const addTo: (registry: Registry, config?: Record<string, unknown>) => void;
  export default addTo;
}
