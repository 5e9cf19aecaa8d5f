// The XMPP stream reading of starttls-wrapper (src/dialogue/xmpp.ts): <starttls/> added to the
// server's first features in every form they come in, and the client's first element told
// apart, over any text without a throw.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  FeaturesOffer,
  MAX_LOOK,
  TLS_NS,
  advertiseStartTls,
  firstClientElement,
} from "../../src/dialogue/xmpp.ts";

const HEADER =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0' from='example.test'>";
const OURS = `<starttls xmlns='${TLS_NS}'></starttls>`;

test("the features get one <starttls/>, right after their opening tag, in every form", () => {
  const mechanisms =
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>";
  for (const [features, expected] of [
    [
      `<stream:features>${mechanisms}</stream:features>`,
      `<stream:features>${OURS}${mechanisms}</stream:features>`,
    ],
    ["<stream:features/>", `<stream:features>${OURS}</stream:features>`],
    ["<stream:features a='>'/>", `<stream:features a='>'>${OURS}</stream:features>`],
  ] as const) {
    assert.deepEqual(advertiseStartTls(HEADER + features, false), {
      kind: "done",
      text: HEADER + expected,
    });
  }
  const required = advertiseStartTls(`${HEADER}<stream:features/>`, true);
  assert.ok(required.kind === "done" && required.text.includes("<required/></starttls>"));
  // A server with STARTTLS of its own keeps its offer, and gets no second one.
  const own = `${HEADER}<stream:features><starttls xmlns='${TLS_NS}'/></stream:features>`;
  assert.deepEqual(advertiseStartTls(own, false), { kind: "done", text: own });
});

test("any split of the server's output: 'more' until the features' opening tag is whole", () => {
  const whole = `${HEADER}<stream:features><bind/></stream:features>`;
  const tagEnd = whole.indexOf("<stream:features>") + "<stream:features>".length;
  for (let cut = 0; cut < tagEnd; cut++)
    assert.equal(advertiseStartTls(whole.slice(0, cut), false).kind, "more");
  fc.assert(
    fc.property(
      fc.string({ maxLength: 200 }),
      fc.boolean(),
      (text, req) => void advertiseStartTls(text, req),
    ),
  );
});

/** What the wrapper sends for the server's `chunks`: once the verdict is in, the text with our
 * offer (or as it is), then every later chunk as it comes; undefined while it is "more". */
function output(chunks: readonly string[], required: boolean): string | undefined {
  const offer = new FeaturesOffer(required);
  for (const [i, chunk] of chunks.entries()) {
    const r = offer.push(chunk);
    if (r.kind !== "more")
      return (r.kind === "done" ? r.text : offer.text()) + chunks.slice(i + 1).join("");
  }
  return undefined;
}

/** `text` cut at `cuts` (offsets, any order, repeats allowed). */
function split(text: string, cuts: readonly number[]): string[] {
  const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  return [0, ...at].map((from, i) => text.slice(from, at[i] ?? text.length));
}

// The output was read whole again at every chunk (quadratic for a server that dribbles its
// features), and decided as soon as the features' opening tag was whole: a server's own offer
// in the next chunk got a second one beside it.
test("any split of the server's output, a byte at a time included, gives the same output as the output at once; a server's own offer in the next chunk is kept, with no second one", () => {
  const own = `${HEADER}<stream:features><starttls xmlns='${TLS_NS}'/></stream:features>`;
  const after = own.indexOf("<starttls");
  for (const chunks of [
    [own.slice(0, after), own.slice(after)],
    [own.slice(0, after + 3), own.slice(after + 3)],
    [...own],
  ])
    assert.equal(output(chunks, false), own, JSON.stringify(chunks.slice(0, 3)));
  const mechanisms = `${HEADER}<stream:features a='>'>\n <mechanisms/></stream:features>`;
  assert.equal(output([...mechanisms], true), output([mechanisms], true));
  // Server output around a features' opening tag in its forms and near misses, what may follow
  // it (an offer of the server's, near misses), and sometimes enough to pass the bound.
  const junk = fc
    .array(
      fc.oneof(
        {
          weight: 20,
          arbitrary: fc.constantFrom(
            ..."<>/ \n\xa0'\"x",
            "<stream:stream>",
            "<starttls",
            "<stream:features",
          ),
        },
        {
          weight: 1,
          arbitrary: fc.constantFrom("y".repeat(MAX_LOOK / 2), "z".repeat(MAX_LOOK - 40)),
        },
      ),
      { maxLength: 6 },
    )
    .map((pieces) => pieces.join(""));
  const serverOutput = fc
    .tuple(
      junk,
      fc.constantFrom(
        "<stream:features>",
        "<stream:features/>",
        "<stream:features a='/>'>",
        "<stream:features\n/>",
        "<stream:featuresX>",
        "<stream:features",
        "",
      ),
      fc.constantFrom("", " ", "\n\t", "\xa0"),
      fc.constantFrom(
        `<starttls xmlns='${TLS_NS}'/>`,
        "<starttls>",
        "<starttls",
        "<starttlsx/>",
        "</stream:features>",
        "<mechanisms/>",
        "",
      ),
      junk,
    )
    .map((parts) => parts.join(""));
  fc.assert(
    fc.property(
      serverOutput,
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.boolean(),
      (text, cuts, required) => {
        const whole = output([text], required);
        assert.equal(output(split(text, cuts), required), whole);
        if (text.length < 2000) assert.equal(output([...text], required), whole);
      },
    ),
    { numRuns: 500 },
  );
});

test("the client's first element: <starttls/> in both forms, with what follows counted (whitespace alone is not); anything else by name", () => {
  for (const element of [
    `<starttls xmlns='${TLS_NS}'/>`,
    `<starttls xmlns="${TLS_NS}"></starttls>`,
    ` \n<starttls xmlns='${TLS_NS}' />`,
  ]) {
    assert.deepEqual(firstClientElement(element), {
      kind: "starttls",
      length: element.length,
      extra: 0,
    });
    assert.deepEqual(firstClientElement(`${element}<presence/>`), {
      kind: "starttls",
      length: element.length,
      extra: 11,
    });
    // Whitespace between elements (RFC 6120 section 4.7) is nothing after it; an element
    // behind it is, and so is a byte that XML does not call whitespace (NBSP, a form feed).
    for (const [after, extra] of [
      ["\n", 0],
      [" \r\n\t ", 0],
      ["\n<presence/>", 12],
      ["\xa0", 1],
      ["\f", 1],
    ] as const)
      assert.deepEqual(
        firstClientElement(`${element}${after}`),
        { kind: "starttls", length: element.length, extra },
        JSON.stringify(after),
      );
    for (let cut = 0; cut < element.length; cut++)
      assert.equal(firstClientElement(element.slice(0, cut)).kind, "more", element.slice(0, cut));
  }
  assert.deepEqual(
    firstClientElement("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"),
    {
      kind: "other",
      name: "auth",
    },
  );
  assert.deepEqual(firstClientElement("<starttls xmlns='other'/>"), {
    kind: "other",
    name: "starttls",
  });
  assert.equal(firstClientElement("hello").kind, "malformed");
  // Before the element too, only XML's whitespace is whitespace (NBSP was taken for it).
  for (const lead of ["\xa0", "\f", " \xa0"])
    assert.deepEqual(
      firstClientElement(`${lead}<starttls xmlns='${TLS_NS}'/>`),
      { kind: "malformed", reason: "text where an element belongs" },
      JSON.stringify(lead),
    );
  fc.assert(fc.property(fc.string({ maxLength: 100 }), (text) => void firstClientElement(text)));
});

test("a client's stream header (and XML declaration) after the features is a header, with its length, whole or not at all", () => {
  const declaration = "<?xml version='1.0'?>";
  const header =
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'" +
    " to='example.org' version='1.0'>";
  for (const text of [declaration, header, ` ${header}`, "<stream to='a>b'>"]) {
    assert.deepEqual(firstClientElement(text), { kind: "header", length: text.length });
    assert.deepEqual(firstClientElement(`${text}<starttls xmlns='${TLS_NS}'/>`), {
      kind: "header",
      length: text.length,
    });
    for (let cut = 1; cut < text.length; cut++)
      assert.equal(firstClientElement(text.slice(0, cut)).kind, "more", text.slice(0, cut));
  }
  assert.deepEqual(firstClientElement("<streams/>"), { kind: "other", name: "streams" });
});
