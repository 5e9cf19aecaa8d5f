// The XMPP stream reading of starttls-wrapper (src/dialogue/xmpp.ts): <starttls/> added to the
// server's first features in every form they come in, and the client's first element told
// apart, over any text without a throw.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { TLS_NS, advertiseStartTls, firstClientElement } from "../../src/dialogue/xmpp.ts";

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
