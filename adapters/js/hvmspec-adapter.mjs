#!/usr/bin/env node
// An implementation of hvmspec's ioreq suite in JavaScript, speaking the
// implementation protocol (hvmspec/protocol.py): JSON lines on stdin and
// stdout. Written from xen/include/public/hvm/ioreq.h and xen/common/ioreq.c,
// not from hvmspec's Python: a second, independent implementation.
//
//   hvmspec conform --impl "node adapters/js/hvmspec-adapter.mjs"
//
// The shared ioreq page is a 4096-byte buffer, one 32-byte struct ioreq per
// vcpu:  addr u64 @0, data u64 @8, count u32 @16, size u32 @20,
// vp_eport u32 @24, pad u16 @28, byte 30 = state:4 | data_is_ptr:1 | dir:1 |
// df:1 | pad:1, type u8 @31.  The VMM keeps, privately, which vcpus wait.

import { createInterface } from "node:readline";

const NONE = 0, READY = 1, INPROCESS = 2, IORESP_READY = 3;
const IOREQ_READ = 1;
const SLOT = 32;

function runIoreq(c) {
  const page = new DataView(new ArrayBuffer(4096));
  const waiting = new Array(c.vcpus).fill(false);
  let crashed = false;
  const state = (v) => page.getUint8(v * SLOT + 30) & 0xf;
  const setState = (v, s) => {
    const off = v * SLOT + 30;
    page.setUint8(off, (page.getUint8(off) & 0xf0) | (s & 0xf));
  };
  const events = [];
  c.steps.forEach((step, i) => {
    const v = step.vcpu;
    let result = "crashed", data = null;
    if (!crashed) {
      const s = state(v);
      switch (step.op) {
        case "send": {
          if (s !== NONE || waiting[v]) { result = "refused"; break; }
          const q = { addr: 0, data: 0, count: 0, size: 0, vp_eport: 0, dir: 0, df: 0,
                      data_is_ptr: 0, type: 0, ...step.ioreq };
          const off = v * SLOT;
          page.setBigUint64(off, BigInt(q.addr), true);
          page.setBigUint64(off + 8, BigInt(q.data), true);
          page.setUint32(off + 16, q.count, true);
          page.setUint32(off + 20, q.size, true);
          page.setUint32(off + 24, q.vp_eport, true);
          page.setUint16(off + 28, 0, true);
          // every field before the state: the state is written last (a barrier)
          page.setUint8(off + 30, (s & 0xf) | (q.data_is_ptr & 1) << 4 | (q.dir & 1) << 5
                                  | (q.df & 1) << 6);
          page.setUint8(off + 31, q.type);
          setState(v, READY);
          waiting[v] = true;
          result = "sent";
          break;
        }
        case "accept":
          if (s === READY) { setState(v, INPROCESS); result = "accepted"; }
          else result = "refused";
          break;
        case "respond":
          if (s === INPROCESS) {
            if ((page.getUint8(v * SLOT + 30) >> 5 & 1) === IOREQ_READ)
              page.setBigUint64(v * SLOT + 8, BigInt(step.data), true);
            setState(v, IORESP_READY);
            result = "responded";
          } else result = "refused";
          break;
        case "wake":
          if (!waiting[v]) { result = "not waiting"; break; }
          if (s === IORESP_READY) {
            data = page.getBigUint64(v * SLOT + 8, true);
            setState(v, NONE);
            waiting[v] = false;
            result = "complete";
          } else if (s === READY || s === INPROCESS) {
            result = "block";
          } else {
            result = "crash";
            crashed = true;
          }
          break;
        case "write_state":
          setState(v, step.state);
          result = "written";
          break;
      }
    }
    const bytes = new Uint8Array(page.buffer, v * SLOT, SLOT);
    events.push({ step: i, result, data,
                  slot: Buffer.from(bytes).toString("hex") });
  });
  return events;
}

const RUNNERS = { ioreq: runIoreq };

// JSON with exact 64-bit integers: a double holds 53 bits, so integers of 16
// digits or more are read as BigInt (marked as strings before parsing), and
// BigInts are written back as bare digits.
function parse(line) {
  const marked = line.replace(/([:\[,]\s*)(\d{16,})(?=\s*[,\]}])/g, '$1"@@$2@@"');
  return JSON.parse(marked, (key, value) =>
    typeof value === "string" && /^@@\d+@@$/.test(value) ? BigInt(value.slice(2, -2)) : value);
}
function stringify(obj) {
  return JSON.stringify(obj, (k, v) => typeof v === "bigint" ? `@@${v}@@` : v)
    .replace(/"@@(\d+)@@"/g, "$1");
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const msg = parse(line);
  let reply;
  if (msg.op === "hello") {
    reply = { op: "hello", protocol: 1, name: "hvmspec-adapter.mjs (JavaScript)",
              suites: (msg.suites || []).filter((s) => s in RUNNERS) };
  } else if (msg.op === "run") {
    try {
      reply = { op: "result", id: msg.case.id, events: RUNNERS[msg.suite](msg.case) };
    } catch (e) {
      reply = { op: "error", id: msg.case && msg.case.id, message: String(e) };
    }
  } else if (msg.op === "bye") {
    process.exit(0);
  } else {
    reply = { op: "error", id: null, message: `unknown op ${msg.op}` };
  }
  process.stdout.write(stringify(reply) + "\n");
});
