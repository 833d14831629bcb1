#!/usr/bin/env node
// STREAM sender (RFC 29) over @interledger/pay: one fixed-source-amount payment to an SPSP
// receiver (RFC 9), sending every ILP Prepare over synchronous ILP-over-HTTP (RFC 35 draft 2,
// PROTOCOLS.md §4) to one peer URL with a bearer token.
//
//   node pay.js --ilp-url URL --token TOKEN --spsp-url URL --amount N --asset-code C --asset-scale S
//   node pay.js --ilp-url URL --token TOKEN --destination-address ADDR --shared-secret B64URL ...
//       (STREAM credentials given, as an Open Payments incoming payment's ilp method has them:
//       no SPSP query)
//       [--receipt-nonce B64 --receipt-secret B64] [--slippage 0.01] [--prices JSON]
//       [--timeout-ms 60000]
//       [--spsp-accept "application/json, application/spsp4+json"]
// Prints exactly one JSON line (contract in README.md); exit code 0 on success, 1 on failure.
'use strict'

const { parseArgs } = require('util')
const { setupPayment, startQuote, pay, closeConnection, isPaymentError } = require('@interledger/pay')

// pay's own SPSP query sends this Accept header; we send the same by default.
const DEFAULT_SPSP_ACCEPT = 'application/json, application/spsp4+json'
// pay's Prepares expire after 20 s; an HTTP exchange never needs longer than that.
const HTTP_TIMEOUT_MS = 25000

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function errorText(err) {
  if (isPaymentError(err)) return err
  return String(err && err.message ? err.message : err)
}

/**
 * The only plugin method pay uses: sendData(prepare bytes) -> reply bytes. Each Prepare is one
 * HTTP POST; a non-2xx answer or a transport failure throws, which pay turns into a T00 reject.
 */
class HttpPlugin {
  constructor(url, token) {
    this.url = url
    this.token = token
    this.counters = { requests: 0, non2xx: 0, failures: 0 }
  }

  async sendData(data) {
    this.counters.requests++
    let res
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${this.token}`,
          'Content-Type': 'application/octet-stream',
          Accept: 'application/octet-stream',
        },
        body: data,
        signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
      })
    } catch (err) {
      this.counters.failures++
      throw err
    }
    if (!res.ok) {
      this.counters.non2xx++
      throw new Error(`ILP-over-HTTP peer answered ${res.status}`)
    }
    return Buffer.from(await res.arrayBuffer())
  }
}

/**
 * SPSP query done here rather than by pay: pay's AccountUrl rejects every URL with an explicit
 * port (so no loopback test server), and it cannot send the Receipt-Nonce / Receipt-Secret headers.
 */
async function querySpsp(url, accept, receipt) {
  const headers = { Accept: accept }
  if (receipt) {
    headers['Receipt-Nonce'] = receipt.nonce
    headers['Receipt-Secret'] = receipt.secret
  }
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
  if (!res.ok) throw new Error(`SPSP query answered ${res.status}`)
  const body = await res.json()
  if (typeof body.destination_account !== 'string' || typeof body.shared_secret !== 'string') {
    throw new Error('SPSP response lacks destination_account or shared_secret')
  }
  // Node's base64 decoder also takes base64url, with or without padding.
  const sharedSecret = Buffer.from(body.shared_secret, 'base64')
  if (sharedSecret.length !== 32) throw new Error('SPSP shared_secret is not 32 bytes')
  return {
    destinationAccount: body.destination_account,
    sharedSecret,
    receiptsEnabled: body.receipts_enabled ?? null,
  }
}

function bigintsToStrings(obj) {
  const out = {}
  for (const [k, v] of Object.entries(obj)) out[k] = typeof v === 'bigint' ? v.toString() : v
  return out
}

async function run(values, result, plugin) {
  const receipt =
    values['receipt-nonce'] !== undefined || values['receipt-secret'] !== undefined
      ? { nonce: values['receipt-nonce'], secret: values['receipt-secret'] }
      : undefined
  if (receipt && (receipt.nonce === undefined || receipt.secret === undefined)) {
    throw Object.assign(new Error('--receipt-nonce and --receipt-secret go together'), { stage: 'args' })
  }

  let spsp
  if (values['destination-address'] !== undefined) {
    const sharedSecret = Buffer.from(values['shared-secret'] ?? '', 'base64')
    if (sharedSecret.length !== 32) {
      throw Object.assign(new Error('--shared-secret must be 32 bytes, base64'), { stage: 'args' })
    }
    spsp = { destinationAccount: values['destination-address'], sharedSecret, receiptsEnabled: null }
  } else {
    result.stage = 'spsp'
    spsp = await querySpsp(values['spsp-url'], values['spsp-accept'], receipt)
    result.spsp = { destinationAccount: spsp.destinationAccount, receiptsEnabled: spsp.receiptsEnabled }
  }

  result.stage = 'setup'
  const destination = await setupPayment({
    plugin,
    destinationAddress: spsp.destinationAccount,
    sharedSecret: spsp.sharedSecret,
  })
  result.destinationAsset = destination.destinationAsset

  try {
    result.stage = 'quote'
    const quote = await startQuote({
      plugin,
      destination,
      amountToSend: values.amount,
      sourceAsset: { code: values['asset-code'], scale: Number(values['asset-scale']) },
      ...(values.slippage !== undefined && { slippage: Number(values.slippage) }),
      ...(values.prices !== undefined && { prices: JSON.parse(values.prices) }),
    })
    result.quote = {
      paymentType: quote.paymentType,
      maxSourceAmount: quote.maxSourceAmount.toString(),
      minDeliveryAmount: quote.minDeliveryAmount.toString(),
      maxPacketAmount: quote.maxPacketAmount.toString(),
      minExchangeRate: quote.minExchangeRate.toString(),
      lowEstimatedExchangeRate: quote.lowEstimatedExchangeRate.toString(),
      highEstimatedExchangeRate: quote.highEstimatedExchangeRate.toString(),
    }

    result.stage = 'pay'
    const progress = await pay({ plugin, destination, quote })
    Object.assign(result, bigintsToStrings(progress))
    result.streamReceipt = progress.streamReceipt ? Buffer.from(progress.streamReceipt).toString('base64') : null
    if (progress.error !== undefined) result.error = progress.error
  } finally {
    await closeConnection(plugin, destination).catch(() => undefined)
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      'ilp-url': { type: 'string' },
      token: { type: 'string' },
      'spsp-url': { type: 'string' },
      'destination-address': { type: 'string' },
      'shared-secret': { type: 'string' },
      amount: { type: 'string' },
      'asset-code': { type: 'string' },
      'asset-scale': { type: 'string' },
      'receipt-nonce': { type: 'string' },
      'receipt-secret': { type: 'string' },
      slippage: { type: 'string' },
      prices: { type: 'string' },
      'timeout-ms': { type: 'string', default: '60000' },
      'spsp-accept': { type: 'string', default: DEFAULT_SPSP_ACCEPT },
    },
  })
  const plugin = new HttpPlugin(values['ilp-url'], values.token)
  const result = {
    ok: false,
    stage: 'args',
    amountSent: '0',
    amountDelivered: '0',
    sourceAmountInFlight: '0',
    destinationAmountInFlight: '0',
    streamReceipt: null,
    error: null,
  }
  const finish = (code) => {
    result.http = plugin.counters
    emit(result)
    process.exit(code)
  }
  const receiver = values['destination-address'] !== undefined ? 'destination-address' : 'spsp-url'
  for (const name of ['ilp-url', 'token', receiver, 'amount', 'asset-code', 'asset-scale']) {
    if (values[name] === undefined) {
      result.error = `--${name} is required`
      finish(1)
    }
  }
  const timer = setTimeout(() => {
    result.error = `timed out after ${values['timeout-ms']} ms`
    finish(1)
  }, Number(values['timeout-ms']))

  try {
    await run(values, result, plugin)
  } catch (err) {
    result.error = errorText(err)
    if (err && err.stage) result.stage = err.stage
  }
  clearTimeout(timer)
  result.ok = result.error === null
  if (result.ok) result.stage = 'done'
  finish(result.ok ? 0 : 1)
}

main()
