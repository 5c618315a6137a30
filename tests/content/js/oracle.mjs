// CID oracle for tests/content: the official IPFS JS importer (ipfs-unixfs-importer) under the
// unixfs-v1-2025 profile (IPIP-499). Written for the tests; prints one JSON object per line.
//
//   node oracle.mjs gen LENGTH        root CID of the deterministic stream (see pattern below)
//   node oracle.mjs file PATH         root CID of a file on disk
//   node oracle.mjs dir PATH [BYTES]  root CID of a directory tree (like `ipfs add -r`); BYTES
//                                    overrides shardSplitThresholdBytes (profile: 262144)
//   node oracle.mjs murmur            murmur3-x64-128 (@multiformats/murmur3) of a JSON array of
//                                    UTF-8 strings on stdin, hex, one line each
//   node oracle.mjs decode HEX        decode a dag-pb block (+ UnixFS Data) to JSON
//   node oracle.mjs decode-many       the same for a JSON array of hex blocks on stdin
//   node oracle.mjs car-read FILE     roots and blocks of a CAR (@ipld/car), each block re-hashed
//   node oracle.mjs car-dir PATH OUT  import a directory, write its blocks as a CAR (@ipld/car)
//
// Deterministic stream: segment s (1 MiB each) is BASE with bytes 0..7 replaced by s as a
// little-endian u64; BASE[i] = (i * 2654435761 >>> 13) & 0xff over 32-bit unsigned arithmetic.
// tests/content/streams.py generates the same bytes in Python.
import { importer } from 'ipfs-unixfs-importer'
import { murmur3128 } from '@multiformats/murmur3'
import { UnixFS } from 'ipfs-unixfs'
import * as dagPb from '@ipld/dag-pb'
import { CarReader, CarWriter } from '@ipld/car'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const MIB = 1 << 20
const options = {
  profile: 'unixfs-v1-2025',
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true
}
// The tests only need CIDs: a put that keeps nothing lets 1 GiB streams run in constant memory.
const sink = { put: async (cid) => cid }

function base () {
  const b = new Uint8Array(MIB)
  for (let i = 0; i < MIB; i++) b[i] = Number((BigInt(i) * 2654435761n & 0xffffffffn) >> 13n) & 0xff
  return b
}

async function * genStream (length) {
  const b = base()
  let left = length
  for (let s = 0; left > 0; s++) {
    const seg = new Uint8Array(b)
    new DataView(seg.buffer).setBigUint64(0, BigInt(s), true)
    const n = Math.min(MIB, left)
    yield n === MIB ? seg : seg.subarray(0, n)
    left -= n
  }
}

async function rootOf (source) {
  let last
  for await (const entry of importer(source, sink, options)) last = entry
  return last
}

function walk (root, rel, out) {
  const full = path.join(root, rel)
  const st = fs.lstatSync(full)
  if (st.isSymbolicLink()) out.push({ path: rel, link: fs.readlinkSync(full) })
  else if (st.isDirectory()) {
    out.push({ path: rel })
    for (const name of fs.readdirSync(full).sort()) {
      if (!name.startsWith('.')) walk(root, path.join(rel, name), out)
    }
  } else out.push({ path: rel, content: fs.createReadStream(full, { highWaterMark: MIB }) })
}

const [mode, arg] = process.argv.slice(2)
if (mode === 'gen') {
  const r = await rootOf([{ content: genStream(Number(arg)) }])
  console.log(JSON.stringify({ cid: r.cid.toString(), size: r.size.toString() }))
} else if (mode === 'file') {
  const r = await rootOf([{ content: fs.createReadStream(arg, { highWaterMark: MIB }) }])
  console.log(JSON.stringify({ cid: r.cid.toString(), size: r.size.toString() }))
} else if (mode === 'dir') {
  const out = []
  walk(path.dirname(path.resolve(arg)), path.basename(path.resolve(arg)), out)
  const opts = process.argv[4] ? { ...options, shardSplitThresholdBytes: Number(process.argv[4]) } : options
  for await (const e of importer(out, sink, opts)) {
    console.log(JSON.stringify({ path: e.path, cid: e.cid.toString(), size: e.size.toString() }))
  }
} else if (mode === 'murmur') {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  for (const s of JSON.parse(Buffer.concat(chunks).toString())) {
    console.log(JSON.stringify({ hex: Buffer.from(await murmur3128.encode(new TextEncoder().encode(s))).toString('hex') }))
  }
} else if (mode === 'decode-many') {
  // stdin: JSON array of hex blocks; stdout: one line per block, {ok, node} or {ok: false, error}
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  for (const hex of JSON.parse(Buffer.concat(chunks).toString())) {
    try {
      console.log(JSON.stringify({ ok: true, node: describe(Buffer.from(hex, 'hex')) }))
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e.message) }))
    }
  }
} else if (mode === 'car-read') {
  const reader = await CarReader.fromBytes(fs.readFileSync(arg))
  const blocks = []
  for await (const { cid, bytes } of reader.blocks()) {
    const ok = Buffer.from(crypto.createHash('sha256').update(bytes).digest()).equals(Buffer.from(cid.multihash.digest))
    blocks.push({ cid: cid.toString(), size: bytes.length, ok })
  }
  console.log(JSON.stringify({ roots: (await reader.getRoots()).map(String), blocks }))
} else if (mode === 'car-dir') {
  const kept = new Map()
  const keep = { put: async (cid, bytes) => { kept.set(cid.toString(), { cid, bytes }); return cid } }
  const out = []
  walk(path.dirname(path.resolve(arg)), path.basename(path.resolve(arg)), out)
  let root
  for await (const e of importer(out, keep, options)) root = e.cid
  const { writer, out: car } = CarWriter.create([root])
  const chunks = []
  const drain = (async () => { for await (const c of car) chunks.push(c) })()
  for (const block of kept.values()) await writer.put(block)
  await writer.close()
  await drain
  fs.writeFileSync(process.argv[4], Buffer.concat(chunks))
  console.log(JSON.stringify({ root: root.toString(), blocks: kept.size }))
} else if (mode === 'decode') {
  console.log(JSON.stringify(describe(Buffer.from(arg, 'hex'))))
} else {
  console.error('usage: node oracle.mjs gen LENGTH | file PATH | dir PATH | decode HEX | decode-many < JSON')
  process.exit(2)
}

function describe (bytes) {
  const node = dagPb.decode(bytes)
  const links = node.Links.map(l => ({ cid: l.Hash.toString(), name: l.Name ?? null, tsize: l.Tsize ?? null }))
  let unixfs = null
  if (node.Data !== undefined) {
    try {
      const u = UnixFS.unmarshal(node.Data)
      unixfs = { type: u.type, blocksizes: u.blockSizes.map(String), data: u.data ? Buffer.from(u.data).toString('hex') : null }
    } catch (e) { unixfs = { error: String(e.message) } }
  }
  return { links, data: node.Data === undefined ? null : Buffer.from(node.Data).toString('hex'), unixfs }
}
