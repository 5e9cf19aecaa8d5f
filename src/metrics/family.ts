// A metric family as our stages see it: counted with inc() or read at scrape time through
// observe(). Nothing here knows the exposition format, and nothing is counted until tcpserver
// --metrics binds the families to its registry (prometheus.ts, loaded only then): under djb's
// tcpserver, or without the option, inc() finds no sink and returns.

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels: Labels;
  value: number;
}

/** How the values of --workers' processes add up in the first one's scrape. */
export type Aggregate = "sum" | "min" | "max" | "first";

export interface FamilySpec {
  /** The metric's name, `_total` included for a counter. */
  name: string;
  help: string;
  type: "counter" | "gauge";
  labels?: readonly string[];
  aggregate?: Aggregate;
  /** Read at scrape time (observe()) rather than counted (inc()). */
  observed?: boolean;
}

const NO_LABELS: Labels = {};

export class Family {
  readonly spec: FamilySpec;
  /** Where counts go once tcpserver --metrics is on. */
  sink: ((labels: Labels, by: number) => void) | undefined;
  private readonly sources = new Set<() => Iterable<Sample>>();

  constructor(spec: FamilySpec) {
    this.spec = spec;
  }

  /** Whether counting goes anywhere: labels that cost something to make are made only then. */
  get enabled(): boolean {
    return this.sink !== undefined;
  }

  inc(labels: Labels = NO_LABELS, by = 1): void {
    this.sink?.(labels, by);
  }

  /** Values read when the metrics are scraped (a gauge, or a total kept elsewhere); the
   * function returned stops reading them. */
  observe(read: () => Iterable<Sample>): () => void {
    this.sources.add(read);
    return () => this.sources.delete(read);
  }

  read(): Sample[] {
    const samples: Sample[] = [];
    for (const source of this.sources) for (const sample of source()) samples.push(sample);
    return samples;
  }
}

/** Every family of the package, in the order they are defined (catalog.ts). */
export const FAMILIES: Family[] = [];

export function family(spec: FamilySpec): Family {
  const made = new Family(spec);
  FAMILIES.push(made);
  return made;
}
