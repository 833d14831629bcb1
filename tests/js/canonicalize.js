#!/usr/bin/env node
// RFC 8785 canonical JSON as json-canonicalize (the package Rafiki signs its admin API requests
// and webhooks with) writes it, for byte-level interop tests of kiungo.signatures.
//
// Reads one JSON text per stdin line; for each prints one line (contract in README.md):
//   default                         -> the canonical form of the value, as is (not re-quoted)
//   --hmac SECRET --timestamp MS    -> the header value Rafiki's clients send:
//                                      t=MS, v1=<hex HMAC-SHA256 of `${MS}.${canonicalize(value)}`>
// A line that fails prints {"error": "..."} in its place.
'use strict'

const crypto = require('crypto')
const readline = require('readline')
const { canonicalize } = require('json-canonicalize')

function option(name) {
  const at = process.argv.indexOf(name)
  return at === -1 ? undefined : process.argv[at + 1]
}

const secret = option('--hmac')
const timestamp = option('--timestamp')
if (secret !== undefined && (timestamp === undefined || !/^[0-9]+$/.test(timestamp))) {
  process.stderr.write('--hmac needs --timestamp MS\n')
  process.exit(2)
}

function answer(line) {
  const canonical = canonicalize(JSON.parse(line))
  if (secret === undefined) return canonical
  const digest = crypto.createHmac('sha256', secret).update(`${timestamp}.${canonical}`).digest('hex')
  return `t=${timestamp}, v1=${digest}`
}

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
input.on('line', (line) => {
  let out
  try {
    out = answer(line)
  } catch (error) {
    out = JSON.stringify({ error: String(error && error.message ? error.message : error) })
  }
  process.stdout.write(out + '\n')
})
