import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

/**
 * A minimal zip writer for tests (stored entries, optionally with traditional PKWARE
 * encryption), so archive tests need no zip tool on the machine.
 */
export function zip(entries: { name: string; data: Buffer }[], password?: string): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const { name, data } of entries) {
    const nameBytes = Buffer.from(name)
    const crc = crc32(data)
    const body = password === undefined ? data : encrypt(data, crc, password)
    const flags = password === undefined ? 0 : 1
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4) // version needed
    local.writeUInt16LE(flags, 6)
    local.writeUInt16LE(0, 8) // stored
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(body.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(nameBytes.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt16LE(flags, 8)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(body.length, 20)
    central.writeUInt32LE(data.length, 24)
    central.writeUInt16LE(nameBytes.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, nameBytes, body)
    centrals.push(central, nameBytes)
    offset += local.length + nameBytes.length + body.length
  }
  const centralSize = centrals.reduce((n, b) => n + b.length, 0)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(centralSize, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, ...centrals, end])
}

const table = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
const crcByte = (crc: number, b: number): number => (table[(crc ^ b) & 0xff]! ^ (crc >>> 8)) >>> 0

/** Traditional PKWARE ("ZipCrypto") encryption: a 12-byte header, then the stream cipher. */
function encrypt(data: Buffer, crc: number, password: string): Buffer {
  const keys = [0x12345678, 0x23456789, 0x34567890]
  const update = (b: number): void => {
    keys[0] = crcByte(keys[0]!, b)
    keys[1] = (Math.imul((keys[1]! + (keys[0]! & 0xff)) >>> 0, 134775813) + 1) >>> 0
    keys[2] = crcByte(keys[2]!, keys[1]! >>> 24)
  }
  const streamByte = (): number => {
    const t = (keys[2]! | 2) & 0xffff
    return (Math.imul(t, t ^ 1) >>> 8) & 0xff
  }
  for (const b of Buffer.from(password)) update(b)
  const header = randomBytes(12)
  header[11] = crc >>> 24
  const plain = Buffer.concat([header, data])
  const out = Buffer.alloc(plain.length)
  for (let i = 0; i < plain.length; i++) {
    out[i] = plain[i]! ^ streamByte()
    update(plain[i]!)
  }
  return out
}
