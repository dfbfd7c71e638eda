/**
 * Atelier's asset document, schema 1, as an Automerge JS 3.x client sees it.
 * The rules a writer keeps are in ../SCHEMA.md; the Rust key names are in
 * core-sync/src/model/schema.rs (a test checks every key appears here).
 *
 *   import type { Asset } from "./asset";
 *   const doc = A.from<Asset>({ schema: 1, title: "…", … });
 *
 * Object shapes are type aliases, not interfaces, so that they satisfy
 * Automerge's `Record<string, unknown>` bounds.
 */
import type { Counter, ImmutableString } from "@automerge/automerge";

/** The schema version this file describes. */
export type SchemaVersion = 1;

/**
 * An atomic string: an id, a kind, a status, a model name. Compared whole,
 * never edited character by character. Atelier writes a scalar string
 * (`new ImmutableString(...)` in JS, which reads back as an ImmutableString);
 * a plain JS string (a text object) is read the same.
 */
export type Atom<T extends string = string> = ImmutableString | T;

/**
 * Prose: a title, a note, an error message. A plain JS string (collaborative
 * text) or an ImmutableString; Atelier reads both and edits a text title in
 * place.
 */
export type Prose = string | ImmutableString;

/** 32 lowercase hex characters (128 random bits): `crypto.randomUUID().replaceAll("-", "")`. */
export type Id = Atom;

/** Milliseconds since 1970-01-01 UTC as a number, or a Date (an Automerge timestamp). */
export type Time = number | Date;

/** A whole number >= 0: a number without a fraction, or a Counter. */
export type Count = number | Counter;

export type MessageKind = "user" | "toolRequest" | "result" | "system";

export type MessageStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

/** The root of an asset document. */
export type Asset = {
  /** Always 1 for this schema; a document without it is read as schema 0 and migrated. */
  schema: SchemaVersion;
  title: Prose;
  createdAt: Time;
  /** Set by every write; absent means `createdAt`. */
  updatedAt?: Time;
  /** The version shown as the asset's image; absent or null when none. */
  activeVersionId?: Id | null;
  /** Every version, under its own id. Created in the document's first change. */
  versions: { [id: string]: Version };
  /** The timeline, oldest first; append at the end. Created in the first change. */
  messages: Message[];
  /** Provider calls' costs. Created in the first change. */
  costEvents: CostEvent[];
  /** The tombstone: present while the asset is in the trash; delete the key to restore. */
  deleted?: Tombstone | null;
};

/** One image version. Versions are never deleted: a rollback changes `activeVersionId`. */
export type Version = {
  /** Equal to its key in `versions` when present. */
  id?: Id;
  parentVersionId?: Id | null;
  createdByMessageId?: Id | null;
  blob: BlobRef;
  /** A smaller PNG of the image (256 px on its longest side). */
  thumbnail?: BlobRef | null;
  createdAt: Time;
};

/** Bytes in the blob store, named by their SHA-256. Never the bytes themselves. */
export type BlobRef = {
  /** 64 lowercase hex characters. */
  sha256: Atom;
  /** "image/png", "image/jpeg" or "image/webp". */
  mime: Atom;
  width: Count;
  height: Count;
  /** Size of the bytes. */
  bytes: Count;
};

/** One timeline entry. */
export type Message = {
  id: Id;
  kind: Atom<MessageKind>;
  /** What the user typed, a tool request's prompt, a system note. */
  text?: Prose | null;
  /** A tool request's tool: "edit", "generate", "remove-background", "upscale". */
  tool?: Atom | null;
  provider?: Atom | null;
  model?: Atom | null;
  /**
   * The tool's parameters, a JSON object: Atelier writes it as a JSON string;
   * a map of plain values is read too.
   */
  params?: Atom | { [key: string]: Json } | null;
  inputVersionIds?: Id[];
  outputVersionIds?: Id[];
  /** Tool requests only. Queued requests run when they reach the cloud. */
  status?: Atom<MessageStatus> | null;
  /** 0 to 1 while running. */
  progress?: number | null;
  error?: ErrorInfo | null;
  operationId?: Atom | null;
  createdAt: Time;
  /** Absent means `createdAt`. */
  updatedAt?: Time;
};

export type ErrorInfo = {
  /** A stable machine code: "safety_block", "quota", … */
  code: Atom;
  /** What a person reads. */
  message: Prose;
};

/** One provider call's cost. */
export type CostEvent = {
  id: Id;
  ts: Time;
  provider: Atom;
  model: Atom;
  /** How many of `unit` were billed, >= 0. */
  units: number | Counter;
  /** "images", "tokens", "seconds", … */
  unit: Atom;
  /** Billionths of a US dollar, a whole number >= 0, so sums are exact. */
  costNanoUsd: Count;
  messageId?: Id | null;
};

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** An asset in the trash (see SCHEMA.md, "Deleting and restoring"). */
export type Tombstone = {
  /** When it was deleted. */
  at: Time;
  /** The deleting device's name. */
  by?: Prose;
};
