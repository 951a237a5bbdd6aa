#!/usr/bin/env node
// An implementation of hvmspec's ioreq and uart suites in JavaScript, speaking the
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

// --- the uart suite: a 16550A from the PC16550D data sheet, as qemu-dm has it
// (the register behaviour spec/devices/uart.py's prose describes). The
// transmitter is never busy; the receiver takes bytes from a sender that
// honours RTS and never overruns it; timers are deadlines on a virtual clock.

const DR = 0x01, OE = 0x02, THRE = 0x20, TEMT = 0x40, DLAB = 0x80;
const RTS = 0x02, LOOP = 0x10;
const TRIGGERS = [1, 4, 8, 14];

class Uart16550 {
  constructor(input, clock, events) {
    this.input = Array.from(input);
    this.now = clock;            // () => ns
    this.events = events;
    this.ier = 0; this.lcr = 0; this.scr = 0; this.fcr = 0; this.mcr = 0x08;
    this.dl = 12; this.rbr = 0; this.fifo = []; this.lsr = THRE | TEMT;
    this.lines = 0xb0; this.deltas = 0;
    this.thri = false; this.cti = false; this.level = 0;
    this.arrival = null; this.timeout = null;
  }
  charNs() { return Math.ceil(10 * Math.max(this.dl, 1) * 1e9 / 115200); }
  fifoOn() { return (this.fcr & 1) !== 0; }
  pending() {
    const avail = (this.lsr & DR) !== 0 &&
      (!this.fifoOn() || this.fifo.length >= TRIGGERS[this.fcr >> 6]);
    if (this.ier & 4 && this.lsr & OE) return 0x06;
    if (this.ier & 1 && this.cti) return 0x0c;
    if (this.ier & 1 && avail) return 0x04;
    if (this.ier & 2 && this.thri) return 0x02;
    if (this.ier & 8 && this.deltas) return 0x00;
    return 0x01;
  }
  update() {
    const level = this.pending() !== 0x01 ? 1 : 0;
    if (level !== this.level) { this.level = level; this.events.push({ irq: level }); }
  }
  room() { return this.fifoOn() ? this.fifo.length < 16 : !(this.lsr & DR); }
  maySend() { return this.input.length > 0 && (this.mcr & (RTS | LOOP)) === RTS && this.room(); }
  startSender() { this.arrival = this.maySend() ? this.now() + this.charNs() : null; }
  senderMayStart() {
    if (this.arrival === null && this.maySend()) this.arrival = this.now() + this.charNs();
  }
  activity(at) {
    if (this.fifo.length) this.timeout = at + 4 * this.charNs();
    else { this.lsr &= ~DR; this.timeout = null; }
  }
  receive(byte, at) {
    if (this.fifoOn()) {
      if (this.fifo.length < 16) this.fifo.push(byte); else this.lsr |= OE;
      this.lsr |= DR;
      this.activity(at);
    } else {
      if (this.lsr & DR) this.lsr |= OE;
      this.rbr = byte;
      this.lsr |= DR;
    }
    this.update();
  }
  loopLines() {
    if (!(this.mcr & LOOP)) return 0xb0;
    const m = this.mcr;
    return (m & 2 ? 0x10 : 0) | (m & 1 ? 0x20 : 0) | (m & 4 ? 0x40 : 0) | (m & 8 ? 0x80 : 0);
  }
  setLines(lines) {
    const changed = (this.lines ^ lines) >> 4;
    this.deltas |= changed & 0x0b;
    if (this.lines & 0x40 && !(lines & 0x40)) this.deltas |= 0x04;
    this.lines = lines;
  }
  read(off) {
    if (off <= 1 && this.lcr & DLAB) return (this.dl >> (8 * off)) & 0xff;
    switch (off) {
      case 0: {
        let v;
        if (this.fifoOn()) {
          v = this.fifo.length ? this.fifo.shift() : 0;
          this.cti = false;
          this.activity(this.now());
          this.senderMayStart();
        } else {
          v = this.rbr; this.lsr &= ~DR;
          this.startSender();
        }
        this.update();
        return v;
      }
      case 1: return this.ier;
      case 2: {
        const v = (this.fifoOn() ? 0xc0 : 0) | this.pending();
        if ((v & 0x0f) === 0x02) { this.thri = false; this.update(); }
        return v;
      }
      case 3: return this.lcr;
      case 4: return this.mcr;
      case 5: { const v = this.lsr; this.lsr &= ~OE; this.update(); return v; }
      case 6: { const v = this.lines | this.deltas; this.deltas = 0; this.update(); return v; }
      default: return this.scr;
    }
  }
  write(off, v) {
    if (off <= 1 && this.lcr & DLAB) {
      const shift = 8 * off;
      this.dl = (this.dl & ~(0xff << shift) & 0xffff) | (v << shift);
      return;
    }
    switch (off) {
      case 0:
        this.thri = false; this.update();
        if (this.mcr & LOOP) this.receive(v, this.now());
        else this.events.push({ serial: v });
        this.thri = true; this.update();
        break;
      case 1:
        if (v & 2 && !(this.ier & 2) && this.lsr & THRE) this.thri = true;
        this.ier = v & 0x0f; this.update();
        break;
      case 2:
        if ((v ^ this.fcr) & 1) v |= 0x06;
        if (v & 2) { this.fifo = []; this.lsr &= ~DR; this.cti = false; this.timeout = null; }
        if (v & 4) this.thri = true;
        this.fcr = v & 0xc9;
        this.senderMayStart(); this.update();
        break;
      case 3: this.lcr = v; break;
      case 4: {
        const rises = v & RTS && !(this.mcr & RTS);
        this.mcr = v & 0x1f;
        this.setLines(this.loopLines());
        if (rises) this.startSender(); else this.senderMayStart();
        this.update();
        break;
      }
      case 7: this.scr = v; break;
    }
  }
  nextDeadline() {
    const t = [this.arrival, this.timeout].filter((x) => x !== null);
    return t.length ? Math.min(...t) : null;
  }
  expire(now) {
    for (;;) {
      const rx = this.arrival, to = this.timeout;
      if (rx !== null && rx <= now && (to === null || rx <= to)) {
        this.arrival = null;
        if (!this.input.length || this.mcr & LOOP) continue;
        this.receive(this.input.shift(), rx);
        if (this.fifoOn() && this.maySend()) this.arrival = rx + this.charNs();
      } else if (to !== null && to <= now) {
        this.timeout = null;
        if (this.fifo.length) { this.cti = true; this.update(); }
      } else return;
    }
  }
}

function runUart(c) {
  const events = [];
  let now = 0;
  const uart = new Uart16550(Buffer.from(c.input, "hex"), () => now, events);
  for (const step of c.steps) {
    if (step.op === "read") events.push({ read: step.offset, value: uart.read(step.offset) });
    else if (step.op === "write") uart.write(step.offset, step.value);
    else {
      const end = now + step.ns;
      for (let due = uart.nextDeadline(); due !== null && due <= end; due = uart.nextDeadline()) {
        now = Math.max(now, due);
        uart.expire(now);
      }
      now = end;
    }
  }
  return events;
}

const RUNNERS = { ioreq: runIoreq, uart: runUart };

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
