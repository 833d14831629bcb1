#!/usr/bin/env node
// ILP packet codec CLI over the reference JS implementation (ilp-packet), for byte-level
// interop tests of Kiungo's ILPv4 codec (RFC 27 packets, RFC 30 OER).
//
// Reads one JSON request per stdin line and writes JSON lines to stdout (contract in README.md):
//   {"op":"encode","packet":{...}}        -> {"hex": "..."}
//   {"op":"decode","hex":"..."}           -> {"packet": {...}}
//   {"op":"random","n":N,"seed":S}        -> N lines {"index": i, "packet": {...}, "hex": "..."}
// Any failure of one request prints {"error": "..."} in place of that request's answer.
// An "id" field in a request is echoed in every line answering it.
'use strict'

const crypto = require('crypto')
const readline = require('readline')
const IlpPacket = require('ilp-packet')

const MAX_UINT64 = (1n << 64n) - 1n
const SCHEMES = ['g', 'private', 'example', 'peer', 'self', 'test', 'test1', 'test2', 'test3', 'local']
const SEGMENT_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-'
const CANONICAL_CODES = Object.values(IlpPacket.IlpErrorCode)
// Characters of 1, 2, 3 and 4 UTF-8 bytes, so messages exercise every UTF-8 width.
const MESSAGE_CHARS = [
  ...'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?-_()[]{}"\'\\/',
  'é', 'ü', 'ß', 'ñ', 'Ω', 'ж', 'ק', 'ع',
  '中', '文', '日', '本', '€', '₿', '→', '✓',
  '🙂', '💸', '🚀', '𝄞',
]
// Lengths where the OER length determinant changes form (short/long, 1/2 length bytes).
const BOUNDARY_LENGTHS = [0, 1, 127, 128, 255, 256, 2000]

/** Deterministic byte stream: SHA-256(seed || counter) blocks. */
class SeededRandom {
  constructor(seed) {
    this.seed = Buffer.from(String(seed), 'utf8')
    this.counter = 0
    this.pool = Buffer.alloc(0)
  }

  bytes(n) {
    while (this.pool.length < n) {
      const counter = Buffer.alloc(8)
      counter.writeBigUInt64BE(BigInt(this.counter++))
      const block = crypto.createHash('sha256').update(this.seed).update(counter).digest()
      this.pool = Buffer.concat([this.pool, block])
    }
    const out = this.pool.subarray(0, n)
    this.pool = this.pool.subarray(n)
    return Buffer.from(out)
  }

  /** Uniform integer in [0, 2^bits) as BigInt. */
  bits(bits) {
    if (bits === 0) return 0n
    const nBytes = Math.ceil(bits / 8)
    const value = BigInt('0x' + this.bytes(nBytes).toString('hex'))
    return value & ((1n << BigInt(bits)) - 1n)
  }

  /** Uniform integer in [lo, hi] (inclusive), numbers. */
  int(lo, hi) {
    const span = BigInt(hi - lo + 1)
    // 64 random bits modulo a small span: bias is negligible for test data.
    return lo + Number(this.bits(64) % span)
  }

  pick(items) {
    return items[this.int(0, items.length - 1)]
  }

  chance(p) {
    return this.int(0, 999999) < p * 1000000
  }
}

function randomAmount(rng) {
  const roll = rng.int(0, 9)
  if (roll === 0) return '0'
  if (roll === 1) return MAX_UINT64.toString()
  if (roll === 2) return rng.bits(rng.int(1, 16)).toString()
  // Uniform bit length, then uniform value of that length: covers every byte width.
  return rng.bits(rng.int(1, 64)).toString()
}

function randomSegment(rng, length) {
  let s = ''
  for (let i = 0; i < length; i++) s += rng.pick(SEGMENT_ALPHABET)
  return s
}

function randomAddress(rng) {
  let address = rng.pick(SCHEMES)
  if (rng.chance(0.05)) {
    // Long address near the 1023-character limit.
    const target = rng.int(900, 1023)
    while (address.length < target - 1) {
      const room = target - address.length - 1
      address += '.' + randomSegment(rng, Math.min(room, rng.int(1, 64)))
    }
  } else {
    const segments = rng.int(1, 6)
    for (let i = 0; i < segments; i++) address += '.' + randomSegment(rng, rng.int(1, 16))
  }
  if (!IlpPacket.isValidIlpAddress(address)) throw new Error('generated invalid address ' + address)
  return address
}

function randomDataLength(rng) {
  return rng.chance(0.2) ? rng.pick(BOUNDARY_LENGTHS) : rng.int(0, 2000)
}

function randomExpiry(rng) {
  const lo = Date.UTC(2000, 0, 1)
  const hi = Date.UTC(2099, 11, 31, 23, 59, 59, 999)
  let ms = rng.int(0, hi - lo) + lo
  if (rng.chance(0.1)) ms -= ms % 1000 // whole seconds: milliseconds "000"
  return new Date(ms)
}

function randomCode(rng) {
  if (rng.chance(0.8)) return rng.pick(CANONICAL_CODES)
  // Unknown but well-formed codes must be carried through by nodes.
  return rng.pick(['F', 'T', 'R']) + rng.int(0, 9) + rng.int(0, 9)
}

function randomMessage(rng) {
  if (rng.chance(0.15)) return ''
  const length = rng.int(1, 200)
  let s = ''
  for (let i = 0; i < length; i++) s += rng.pick(MESSAGE_CHARS)
  return s
}

/** Random packet as ilp-packet objects (Buffers, Date), type cycling 12, 13, 14. */
function randomPacket(rng, index) {
  const type = [12, 13, 14][index % 3]
  const data = rng.bytes(randomDataLength(rng))
  if (type === 12) {
    return {
      type,
      data: {
        amount: randomAmount(rng),
        expiresAt: randomExpiry(rng),
        executionCondition: rng.bytes(32),
        destination: randomAddress(rng),
        data,
      },
    }
  }
  if (type === 13) {
    return { type, data: { fulfillment: rng.bytes(32), data } }
  }
  return {
    type,
    data: {
      code: randomCode(rng),
      triggeredBy: randomAddress(rng),
      message: randomMessage(rng),
      data,
    },
  }
}

/** ilp-packet object -> flat JSON shape (binary fields hex, expiresAt ISO). */
function toJson(packet) {
  const p = packet.data
  switch (packet.type) {
    case 12:
      return {
        type: 12,
        amount: String(p.amount),
        expiresAt: p.expiresAt.toISOString(),
        executionCondition: p.executionCondition.toString('hex'),
        destination: p.destination,
        data: p.data.toString('hex'),
      }
    case 13:
      return { type: 13, fulfillment: p.fulfillment.toString('hex'), data: p.data.toString('hex') }
    case 14:
      return {
        type: 14,
        code: p.code,
        triggeredBy: p.triggeredBy,
        message: p.message,
        data: p.data.toString('hex'),
      }
    default:
      throw new Error('unknown packet type ' + packet.type)
  }
}

function hexField(json, name) {
  const value = json[name]
  if (typeof value !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(value)) {
    throw new Error(`${name} must be an even-length hex string`)
  }
  return Buffer.from(value, 'hex')
}

function stringField(json, name) {
  if (typeof json[name] !== 'string') throw new Error(`${name} must be a string`)
  return json[name]
}

/** Flat JSON shape -> ilp-packet object. */
function fromJson(json) {
  switch (json.type) {
    case 12: {
      const expiresAt = new Date(stringField(json, 'expiresAt'))
      if (Number.isNaN(expiresAt.getTime())) throw new Error('expiresAt is not a valid ISO date')
      return {
        type: 12,
        data: {
          amount: stringField(json, 'amount'),
          expiresAt,
          executionCondition: hexField(json, 'executionCondition'),
          destination: stringField(json, 'destination'),
          data: hexField(json, 'data'),
        },
      }
    }
    case 13:
      return { type: 13, data: { fulfillment: hexField(json, 'fulfillment'), data: hexField(json, 'data') } }
    case 14:
      return {
        type: 14,
        data: {
          code: stringField(json, 'code'),
          triggeredBy: stringField(json, 'triggeredBy'),
          message: stringField(json, 'message'),
          data: hexField(json, 'data'),
        },
      }
    default:
      throw new Error('type must be 12, 13 or 14')
  }
}

function handle(request, emit) {
  switch (request.op) {
    case 'encode': {
      const json = request.packet !== undefined ? request.packet : request
      emit({ hex: IlpPacket.serializeIlpPacket(fromJson(json)).toString('hex') })
      return
    }
    case 'decode': {
      const bytes = hexField(request, 'hex')
      emit({ packet: toJson(IlpPacket.deserializeIlpPacket(bytes)) })
      return
    }
    case 'random': {
      const n = request.n
      if (!Number.isInteger(n) || n < 0) throw new Error('n must be a non-negative integer')
      if (request.seed === undefined) throw new Error('seed is required')
      const rng = new SeededRandom(request.seed)
      const lines = []
      for (let i = 0; i < n; i++) {
        const packet = randomPacket(rng, i)
        const hex = IlpPacket.serializeIlpPacket(packet).toString('hex')
        lines.push({ index: i, packet: toJson(packet), hex })
      }
      // Generate everything first so a failure never leaves a partial batch on stdout.
      for (const line of lines) emit(line)
      return
    }
    default:
      throw new Error('op must be encode, decode or random')
  }
}

function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    if (line.trim() === '') return
    let request
    let id
    const emit = (obj) => {
      const out = id !== undefined ? { id, ...obj } : obj
      process.stdout.write(JSON.stringify(out) + '\n')
    }
    try {
      request = JSON.parse(line)
      id = request && typeof request === 'object' ? request.id : undefined
      handle(request, emit)
    } catch (err) {
      emit({ error: String(err && err.message ? err.message : err) })
    }
  })
}

main()
