// docs/frontend.md's example, run as it is against a real livehub: the code block after the
// `<!-- tested -->` marker, with its import pointed at the SDK that livehub serves.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Livehub as Server, ROOT } from "./server.mjs";

const server = new Server();
before(() => server.start());
after(() => server.close());

function example() {
  const doc = readFileSync(join(ROOT, "docs", "frontend.md"), "utf8");
  const match = /<!-- tested: [^>]*-->\n```js\n([\s\S]*?)\n```/.exec(doc);
  assert.ok(match, "docs/frontend.md has no tested example");
  return match[1];
}

test("the example is about 30 lines", () => {
  const lines = example().split("\n").filter((line) => line.trim()).length;
  assert.ok(lines <= 35, `${lines} lines`);
});

test("docs/frontend.md's example runs against livehub", async () => {
  const served = await (await fetch(`${server.url}/sdk/livehub-client.js`)).text();
  const dir = mkdtempSync(join(tmpdir(), "livehub-doc-"));
  try {
    writeFileSync(join(dir, "livehub-client.mjs"), served);
    const code = example().replace('from "/sdk/livehub-client.js"', 'from "./livehub-client.mjs"');
    writeFileSync(join(dir, "example.mjs"), code);
    // a page's globals: its location (the Livehub default baseUrl) and its console
    const lines = [];
    const log = console.log;
    globalThis.location = { origin: server.url };
    console.log = (...args) => lines.push(args.join(" "));
    try {
      await import(join(dir, "example.mjs"));
    } finally {
      console.log = log;
      delete globalThis.location;
    }
    assert.match(lines[0], /^publish with OBS: rtmp:\/\/\S+ stream-\S+\?secret=\S+$/);
    assert.match(lines[1], /^joined as \S{12}; 1 here$/);
    assert.ok(lines.includes("Ana: hello, world"), lines.join("\n"));
    assert.ok(lines.includes("refused: invalid_text"), lines.join("\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
