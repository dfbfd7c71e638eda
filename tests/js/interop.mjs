// @ts-check
// A real Automerge JS peer for Atelier (driven by tests/tests/js_interop.rs).
// It writes documents the way a JS developer would, following the published
// schema (core-sync/SCHEMA.md, core-sync/schema/asset.d.ts), and reads the
// documents Atelier writes. Documents travel as Atelier exports
// (`atelier-sync export` / `import`): OUT/docs/<id>.automerge, OUT/blobs/<sha256>,
// OUT/manifest.json written last.
//
//   node interop.mjs new OUT PNG WIDTH HEIGHT   a whole asset from scratch
//   node interop.mjs edit IN OUT                natural edits to Atelier's documents
//   node interop.mjs malformed IN OUT           entries that break the schema, and a good one
//   node interop.mjs read IN                    every field of Atelier's documents, type-checked
//   node interop.mjs merge IN_A IN_B OUT        merge two copies of each document
//
// Each command prints one JSON object on stdout: what it wrote or read, with
// strings as strings and times as milliseconds.

import * as A from "@automerge/automerge";
import { createHash, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** @typedef {import("../../core-sync/schema/asset.js").Asset} Asset */
/** @typedef {import("../../core-sync/schema/asset.js").Message} Message */

/** A fresh id in Atelier's form: 32 lowercase hex characters. */
const newId = () => randomUUID().replaceAll("-", "");

const sha256 = (/** @type {Uint8Array} */ bytes) =>
  createHash("sha256").update(bytes).digest("hex");

// ------------------------------------------------------------------ exports

/**
 * @param {string} dir
 * @returns {{ id: string, doc: A.Doc<Asset> }[]}
 */
function readExport(dir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  return manifest.docs.map((/** @type {{ id: string }} */ d) => ({
    id: d.id,
    doc: A.load(fs.readFileSync(path.join(dir, "docs", `${d.id}.automerge`))),
  }));
}

/**
 * Writes an export Atelier can `import`: documents, blobs, then the manifest.
 * @param {string} dir
 * @param {{ id: string, doc: A.Doc<Asset> }[]} docs
 * @param {Uint8Array[]} blobs
 */
function writeExport(dir, docs, blobs = []) {
  fs.mkdirSync(path.join(dir, "docs"), { recursive: true });
  fs.mkdirSync(path.join(dir, "blobs"), { recursive: true });
  const blobEntries = blobs.map((bytes) => {
    const sha = sha256(bytes);
    fs.writeFileSync(path.join(dir, "blobs", sha), bytes);
    return { sha256: sha, bytes: bytes.length };
  });
  const docEntries = docs.map(({ id, doc }) => {
    const bytes = A.save(doc);
    fs.writeFileSync(path.join(dir, "docs", `${id}.automerge`), bytes);
    return { id, heads: [...A.getHeads(doc)].sort(), sha256: sha256(bytes), bytes: bytes.length };
  });
  const manifest = { format: 1, exportedAt: Date.now(), docs: docEntries, blobs: blobEntries };
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
}

// ------------------------------------------------------------------- reading

/** @param {unknown} v */
const isAtom = (v) => typeof v === "string" || A.isImmutableString(v);
/** @param {unknown} v */
const isTime = (v) => (typeof v === "number" && Number.isInteger(v)) || v instanceof Date;
/** @param {unknown} v */
const isCount = (v) =>
  (typeof v === "number" && Number.isInteger(v) && v >= 0) || A.isCounter(v);
/** @param {unknown} v */
const isId = (v) => isAtom(v) && /^[0-9a-f]{32}$/.test(String(v));

/**
 * Every way `doc` departs from the documented types (asset.d.ts), as
 * "path: what" lines. Empty for a document that follows the schema.
 * @param {any} doc
 */
function typeProblems(doc) {
  /** @type {string[]} */
  const out = [];
  /** @param {boolean} ok @param {string} where @param {unknown} v */
  const want = (ok, where, v) => {
    if (!ok) out.push(`${where}: ${typeof v} ${JSON.stringify(v)}`);
  };
  /** @param {any} obj @param {string} key @param {(v: unknown) => boolean} test @param {string} at */
  const opt = (obj, key, test, at) => {
    if (obj[key] !== undefined && obj[key] !== null) want(test(obj[key]), `${at}.${key}`, obj[key]);
  };
  want(doc.schema === 1, "schema", doc.schema);
  want(isAtom(doc.title), "title", doc.title);
  want(isTime(doc.createdAt), "createdAt", doc.createdAt);
  opt(doc, "updatedAt", isTime, "");
  opt(doc, "activeVersionId", isId, "");
  /** @param {any} b @param {string} at */
  const blob = (b, at) => {
    want(isAtom(b.sha256) && /^[0-9a-f]{64}$/.test(String(b.sha256)), `${at}.sha256`, b.sha256);
    want(isAtom(b.mime), `${at}.mime`, b.mime);
    for (const k of ["width", "height", "bytes"]) want(isCount(b[k]), `${at}.${k}`, b[k]);
  };
  for (const [key, v] of Object.entries(doc.versions)) {
    const at = `versions.${key}`;
    opt(v, "id", (id) => String(id) === key, at);
    opt(v, "parentVersionId", isId, at);
    opt(v, "createdByMessageId", isId, at);
    blob(v.blob, `${at}.blob`);
    if (v.thumbnail) blob(v.thumbnail, `${at}.thumbnail`);
    want(isTime(v.createdAt), `${at}.createdAt`, v.createdAt);
  }
  const kinds = ["user", "toolRequest", "result", "system"];
  const statuses = ["queued", "running", "succeeded", "failed", "canceled"];
  doc.messages.forEach((/** @type {any} */ m, /** @type {number} */ i) => {
    const at = `messages[${i}]`;
    want(isId(m.id), `${at}.id`, m.id);
    want(isAtom(m.kind) && kinds.includes(String(m.kind)), `${at}.kind`, m.kind);
    for (const k of ["text", "tool", "provider", "model", "operationId"]) opt(m, k, isAtom, at);
    opt(m, "params", (p) => isAtom(p) || typeof p === "object", at);
    for (const k of ["inputVersionIds", "outputVersionIds"]) {
      opt(m, k, (l) => Array.isArray(l) && l.every(isId), at);
    }
    opt(m, "status", (s) => isAtom(s) && statuses.includes(String(s)), at);
    opt(m, "progress", (p) => typeof p === "number" && p >= 0 && p <= 1, at);
    opt(m, "error", (/** @type {any} */ e) => isAtom(e.code) && isAtom(e.message), at);
    want(isTime(m.createdAt), `${at}.createdAt`, m.createdAt);
    opt(m, "updatedAt", isTime, at);
  });
  doc.costEvents.forEach((/** @type {any} */ c, /** @type {number} */ i) => {
    const at = `costEvents[${i}]`;
    want(isId(c.id), `${at}.id`, c.id);
    want(isTime(c.ts), `${at}.ts`, c.ts);
    for (const k of ["provider", "model", "unit"]) want(isAtom(c[k]), `${at}.${k}`, c[k]);
    want(typeof c.units === "number" || A.isCounter(c.units), `${at}.units`, c.units);
    want(isCount(c.costNanoUsd), `${at}.costNanoUsd`, c.costNanoUsd);
    opt(c, "messageId", isId, at);
  });
  return out;
}

/**
 * A document's content as plain JSON: atoms and text as strings, times as
 * milliseconds, counters as numbers. What the Rust side compares with its
 * own reading.
 * @param {unknown} v
 * @returns {unknown}
 */
function plain(v) {
  if (A.isImmutableString(v)) return String(v);
  if (A.isCounter(v)) return /** @type {A.Counter} */ (v).value;
  if (v instanceof Date) return v.getTime();
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** Which fields of `doc` hold text objects and which scalar strings. */
function stringKinds(/** @type {any} */ doc) {
  const m = doc.messages[0];
  const kind = (/** @type {unknown} */ v) =>
    typeof v === "string" ? "text" : A.isImmutableString(v) ? "scalar" : typeof v;
  return { title: kind(doc.title), firstMessageId: kind(m?.id), firstMessageKind: kind(m?.kind) };
}

// ------------------------------------------------------------------ commands

/**
 * A whole asset from scratch, the way a JS developer following the schema
 * would write it: plain strings (Automerge JS makes them text), numbers,
 * a Date, every container in the first change.
 * @param {string} out @param {string} png @param {number} width @param {number} height
 */
function cmdNew(out, png, width, height) {
  const image = fs.readFileSync(png);
  const v1 = newId();
  const prompt = newId();
  const request = newId();
  const docId = newId();
  const now = Date.now();
  /** @type {Asset} */
  const asset = {
    schema: 1,
    title: "Lighthouse from JS",
    createdAt: now,
    updatedAt: now,
    activeVersionId: v1,
    versions: {
      [v1]: {
        id: v1,
        createdByMessageId: prompt,
        blob: { sha256: sha256(image), mime: "image/png", width, height, bytes: image.length },
        createdAt: new Date(now + 1),
      },
    },
    messages: [
      { id: prompt, kind: "user", text: "A lighthouse at dusk", createdAt: now },
      {
        id: request,
        kind: "toolRequest",
        text: "Upscale it",
        tool: "upscale",
        provider: "replicate",
        model: "nightmareai/real-esrgan",
        params: JSON.stringify({ scale: 4 }),
        inputVersionIds: [v1],
        outputVersionIds: [],
        status: "failed",
        error: { code: "quota", message: "Out of credit" },
        progress: 0.25,
        operationId: request,
        createdAt: now + 2,
        updatedAt: now + 3,
      },
    ],
    costEvents: [
      {
        id: newId(),
        ts: now + 3,
        provider: "replicate",
        model: "nightmareai/real-esrgan",
        units: 1.5,
        unit: "seconds",
        costNanoUsd: 2_300_000,
        messageId: request,
      },
    ],
  };
  const doc = A.from(asset);
  writeExport(out, [{ id: docId, doc }], [image]);
  return { docId, written: plain(A.toJS(doc)), stringKinds: stringKinds(doc) };
}

/**
 * Natural edits to every document of an Atelier export: rename, append a
 * note, cancel the first queued request.
 * @param {string} input @param {string} out
 */
function cmdEdit(input, out) {
  const now = Date.now();
  const edited = readExport(input).map(({ id, doc }) => {
    const note = newId();
    const next = A.change(doc, (/** @type {Asset} */ d) => {
      d.title = `${d.title} (edited in JS)`;
      d.messages.push({ id: note, kind: "user", text: "Hello from JS", createdAt: now });
      const queued = d.messages.find((m) => String(m.status) === "queued");
      if (queued) {
        queued.status = "canceled";
        queued.updatedAt = now;
      }
      d.updatedAt = now;
    });
    return { id, doc: next, note };
  });
  writeExport(out, edited);
  return {
    docs: edited.map(({ id, doc, note }) => ({ id, note, title: String(doc.title) })),
  };
}

/**
 * Entries that break the schema (a missing id, an unknown kind, a width that
 * is a word, a cost that is a word), then one good note after them.
 * @param {string} input @param {string} out
 */
function cmdMalformed(input, out) {
  const now = Date.now();
  const good = newId();
  const badVersion = newId();
  const edited = readExport(input).map(({ id, doc }) => {
    const next = A.change(doc, (/** @type {Asset} */ d) => {
      const messages = /** @type {any[]} */ (d.messages);
      messages.push({ kind: "user", text: "I have no id", createdAt: now });
      messages.push({ id: newId(), kind: "note", text: "an unknown kind", createdAt: now });
      const versions = /** @type {any} */ (d.versions);
      versions[badVersion] = {
        id: badVersion,
        blob: { sha256: "0".repeat(64), mime: "image/png", width: "wide", height: 10, bytes: 1 },
        createdAt: now,
      };
      const costs = /** @type {any[]} */ (d.costEvents);
      costs.push({
        id: newId(),
        ts: now,
        provider: "replicate",
        model: "m",
        units: 1,
        unit: "seconds",
        costNanoUsd: "free",
      });
      d.messages.push({ id: good, kind: "user", text: "Still readable", createdAt: now });
    });
    return { id, doc: next };
  });
  writeExport(out, edited);
  return { good, badVersion };
}

/** @param {string} input */
function cmdRead(input) {
  return {
    docs: readExport(input).map(({ id, doc }) => ({
      id,
      typeProblems: typeProblems(doc),
      stringKinds: stringKinds(doc),
      content: plain(A.toJS(doc)),
    })),
  };
}

/** @param {string} a @param {string} b @param {string} out */
function cmdMerge(a, b, out) {
  const theirs = new Map(readExport(b).map(({ id, doc }) => [id, doc]));
  const merged = readExport(a).map(({ id, doc }) => {
    const other = theirs.get(id);
    return { id, doc: other ? A.merge(doc, other) : doc };
  });
  writeExport(out, merged);
  return {
    docs: merged.map(({ id, doc }) => ({
      id,
      typeProblems: typeProblems(doc),
      content: plain(A.toJS(doc)),
    })),
  };
}

const [cmd, ...args] = process.argv.slice(2);
/** @type {Record<string, () => unknown>} */
const commands = {
  new: () => cmdNew(args[0], args[1], Number(args[2]), Number(args[3])),
  edit: () => cmdEdit(args[0], args[1]),
  malformed: () => cmdMalformed(args[0], args[1]),
  read: () => cmdRead(args[0]),
  merge: () => cmdMerge(args[0], args[1], args[2]),
};
if (!(cmd in commands)) {
  console.error(`usage: node interop.mjs ${Object.keys(commands).join("|")} ARGS…`);
  process.exit(2);
}
console.log(JSON.stringify(commands[cmd]()));
